"""Scaled dot-product attention with a reference and a fused backend.

Both the VAE mid-block ``AttnBlock`` (one head over all channels, scale ``1/sqrt(C)``) and the
UNet's ``BasicTransformerBlock`` (heads of 32 channels, scale ``32^-0.5``) call
:func:`attention`, so switching the backend switches every attention of the model.

* ``"math"`` is the reference: it writes the scores out explicitly in the original's order,
  ``softmax((q k^T) * scale) v`` (scores first, then the scale, as upstream
  ``CrossAttention.forward`` and ``AttnBlock.forward`` do).
* ``"sdpa"`` hands the same computation to ``torch.nn.functional.scaled_dot_product_attention``,
  which picks a fused kernel (flash / memory-efficient) when one fits and never materialises
  the ``[N, N]`` score matrix on GPU. It agrees with ``"math"`` to rounding.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

BACKENDS = ("math", "sdpa")


def attention(q: Tensor, k: Tensor, v: Tensor, heads: int, backend: str = "math") -> Tensor:
    """Multi-head softmax attention over a token sequence.

    Heads split the channel axis into ``heads`` contiguous groups (head ``h`` uses channels
    ``h*d .. h*d + d - 1`` with ``d = C / heads``), as upstream's ``b n (h d)`` layout does.

    Args:
        q: queries [B, N, C].
        k: keys [B, M, C].
        v: values [B, M, C].
        heads: number of heads; must divide C.
        backend: ``"math"`` (reference, explicit scores) or ``"sdpa"`` (fused kernel).

    Returns:
        Attention output [B, N, C], heads concatenated in channel order.

    Raises:
        ValueError: for an unknown backend or a head count that does not divide C.
    """
    b, n, c = q.shape
    if c % heads != 0:
        raise ValueError(f"heads={heads} must divide the channel count {c}")
    d = c // heads
    scale = d**-0.5
    # [B, N, C] -> [B, heads, N, d]: a view, no copy yet.
    qh = q.unflatten(-1, (heads, d)).transpose(1, 2)
    kh = k.unflatten(-1, (heads, d)).transpose(1, 2)
    vh = v.unflatten(-1, (heads, d)).transpose(1, 2)
    if backend == "math":
        # Fold heads into the batch for bmm (upstream "(b h) n d"); reshape copies only when
        # heads > 1 forces a transpose.
        qb = qh.reshape(b * heads, n, d)
        kb = kh.reshape(b * heads, -1, d)
        vb = vh.reshape(b * heads, -1, d)
        scores = torch.bmm(qb, kb.transpose(1, 2))
        scores.mul_(scale)  # in place: same rounding as "* scale", one [N, M] buffer less
        weights = scores.softmax(dim=-1)
        out = torch.bmm(weights, vb).view(b, heads, n, d)
    elif backend == "sdpa":
        out = F.scaled_dot_product_attention(qh, kh, vh, scale=scale)
    else:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    return out.transpose(1, 2).reshape(b, n, c)
