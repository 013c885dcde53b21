"""Classifier-free guidance (Ho & Salimans, 2022) as a wrapper that returns a denoiser.

AudioSR guides in v-space: ``v = v_uncond + scale * (v_cond - v_uncond)``. The original makes
two UNet calls per step (conditional first, :func:`two_call_guidance`); :func:`classifier_free`
puts both halves through one batched forward of batch 2B, which is the same arithmetic per item
and one kernel launch sequence instead of two. Samplers never see the condition: they get a
plain ``(x_t, t) -> v`` callable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor

log = logging.getLogger(__name__)

# (x_t [B, C, H, W], t [B] int64 DDPM step, cond [B, C', H, W]) -> v [B, C, H, W]
ConditionalModel = Callable[[Tensor, Tensor, Tensor], Tensor]
Denoiser = Callable[[Tensor, Tensor], Tensor]


def concat_condition(x: Tensor, cond: Tensor, scale_factor: Tensor | float) -> Tensor:
    """The UNet input of AudioSR: ``cat([x_t, scale_factor * cond], dim=1)`` (spec 6).

    The noisy latent comes first, then the low-pass condition latent scaled by the checkpoint's
    ``scale_factor`` (the condition VAE's output is stored unscaled). Layout is the original's
    ``[B, C, T/8, n_mels/8]`` (time before frequency) so the weights load unchanged.

    Args:
        x: [B, 16, T/8, F/8] noisy latent x_t.
        cond: [B, 16, T/8, F/8] unscaled condition latent (or the constant unconditional one).
        scale_factor: the checkpoint's ``scale_factor`` (0-dim tensor or float).

    Returns:
        [B, 32, T/8, F/8] UNet input.
    """
    return torch.cat([x, scale_factor * cond], dim=1)


def classifier_free(
    model: ConditionalModel, cond: Tensor, uncond: Tensor, scale: float
) -> Denoiser:
    """Wrap a conditional v-model into a guided denoiser ``(x_t, t) -> v``.

    ``scale == 1`` makes a single conditional pass (the original skips the unconditional pass
    too); ``scale == 0`` a single unconditional pass. Otherwise one forward of batch 2B with
    ``x`` and ``t`` duplicated and ``[cond; uncond]`` stacked, then
    ``v = v_u + scale * (v_c - v_u)`` in the output dtype.

    Args:
        model: ``(x [B, C, H, W], t [B], cond [B, C', H, W]) -> v [B, C, H, W]``.
        cond: [B, C', H, W] condition.
        uncond: unconditional condition, broadcastable to ``cond`` (e.g. [1, C', H, W]).
        scale: guidance weight w (AudioSR's default is 3.5).

    Returns:
        A denoiser ``(x [B, C, H, W], t [B]) -> v [B, C, H, W]``.
    """
    scale = float(scale)
    if scale == 1.0:

        def conditional(x: Tensor, t: Tensor) -> Tensor:
            return model(x, t, cond)

        return conditional

    uncond = uncond.expand_as(cond)
    if scale == 0.0:

        def unconditional(x: Tensor, t: Tensor) -> Tensor:
            return model(x, t, uncond)

        return unconditional

    # Built once here rather than on every step: the stacked condition never changes.
    both = torch.cat([cond, uncond], dim=0)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        out = model(torch.cat([x, x], dim=0), torch.cat([t, t], dim=0), both)
        v_cond, v_uncond = out.chunk(2, dim=0)
        return v_uncond + scale * (v_cond - v_uncond)

    return guided


def two_call_guidance(
    model: ConditionalModel, cond: Tensor, uncond: Tensor, scale: float
) -> Denoiser:
    """Classifier-free guidance as the original computes it: two UNet calls of batch B per step.

    The conditional pass runs first, then the unconditional one; the result is
    ``v_u + scale * (v_c - v_u)`` like :func:`classifier_free`, which does the same in one call
    of batch 2B. With ``scale`` 0 or 1 both make one call.

    Args:
        model: ``(x [B, C, H, W], t [B], cond [B, C', H, W]) -> v [B, C, H, W]``.
        cond: [B, C', H, W] condition.
        uncond: unconditional condition, broadcastable to ``cond``.
        scale: guidance weight w.

    Returns:
        A denoiser ``(x, t) -> v``.
    """
    scale = float(scale)
    if scale in (0.0, 1.0):
        return classifier_free(model, cond, uncond, scale)
    uncond = uncond.expand_as(cond)

    def guided(x: Tensor, t: Tensor) -> Tensor:
        v_cond = model(x, t, cond)
        v_uncond = model(x, t, uncond)
        return v_uncond + scale * (v_cond - v_uncond)

    return guided
