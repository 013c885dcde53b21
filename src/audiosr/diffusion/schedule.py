"""The DDPM noise schedule of AudioSR and the v-prediction conversions.

AudioSR (Liu et al., ICASSP 2024) inherits latent-diffusion's cosine schedule (Nichol & Dhariwal,
2021, Eq. 17) with T = 1000 steps and *no* clipping of beta, so the last step has beta = 1 and
``alpha_bar[999] = 0`` (zero terminal SNR). The network predicts v (Salimans & Ho, 2022):
with ``a = sqrt(alpha_bar_t)`` and ``b = sqrt(1 - alpha_bar_t)``::

    x_t = a * x0 + b * eps,    v = a * eps - b * x0
    x0  = a * x_t - b * v,     eps = b * x_t + a * v

The original builds the schedule in float64 and stores fp32 buffers cast from it; the sampler
uses those fp32 buffers. :class:`Schedule` keeps the float64 values and exposes the fp32 buffers
as properties, so the DDIM path can reproduce the original bit for bit while the new solvers
work in float64 (alpha, sigma, lambda).

References: spec sections 8.1-8.4 (``shared/spec/audiosr-inference.md``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..config import DiffusionConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Schedule:
    """A discrete DDPM schedule in float64.

    Attributes:
        betas: [T] float64 per-step betas (``make_beta_schedule`` output, unclipped).
        alphas_cumprod: [T] float64 ``cumprod(1 - betas)`` (alpha_bar; 0 at the last step).
    """

    betas: Tensor
    alphas_cumprod: Tensor

    def __post_init__(self) -> None:
        for name in ("betas", "alphas_cumprod"):
            value = getattr(self, name)
            if value.dtype != torch.float64 or value.ndim != 1:
                raise ValueError(f"Schedule.{name} must be a 1-D float64 tensor, got {value}")
        if self.betas.shape != self.alphas_cumprod.shape:
            raise ValueError("Schedule.betas and Schedule.alphas_cumprod must have equal length")

    @property
    def num_timesteps(self) -> int:
        return self.alphas_cumprod.shape[0]

    # fp32 buffers of the original (each cast from the fp64 value, as register_schedule does).
    @property
    def betas_f32(self) -> Tensor:
        return self.betas.float()

    @property
    def alphas_cumprod_f32(self) -> Tensor:
        return self.alphas_cumprod.float()

    @property
    def alphas_cumprod_prev_f32(self) -> Tensor:
        one = torch.ones(1, dtype=torch.float64)
        return torch.cat([one, self.alphas_cumprod[:-1]]).float()

    @property
    def sqrt_alphas_cumprod_f32(self) -> Tensor:
        return _sqrt64(self.alphas_cumprod).float()

    @property
    def sqrt_one_minus_alphas_cumprod_f32(self) -> Tensor:
        return _sqrt64(1.0 - self.alphas_cumprod).float()

    def buffers(self) -> dict[str, Tensor]:
        """The fp32 buffers under the original's state-dict names (for checkpoint checks)."""
        return {
            "betas": self.betas_f32,
            "alphas_cumprod": self.alphas_cumprod_f32,
            "alphas_cumprod_prev": self.alphas_cumprod_prev_f32,
            "sqrt_alphas_cumprod": self.sqrt_alphas_cumprod_f32,
            "sqrt_one_minus_alphas_cumprod": self.sqrt_one_minus_alphas_cumprod_f32,
        }

    # float64 quantities for the ODE solvers.
    def alpha_sigma(self, t: int) -> tuple[float, float]:
        """(alpha_t, sigma_t) = (sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)) as float64 scalars."""
        ac = float(self.alphas_cumprod[t])
        return math.sqrt(ac), math.sqrt(1.0 - ac)

    def log_snr(self, t: int) -> float:
        """lambda_t = log(alpha_t / sigma_t) (half log-SNR); -inf where alpha_bar_t = 0."""
        ac = float(self.alphas_cumprod[t])
        if ac == 0.0:
            return -math.inf
        return 0.5 * (math.log(ac) - math.log1p(-ac))

    @property
    def log_snrs(self) -> Tensor:
        """[T] float64 lambda_t for every step (-inf at the zero-SNR end)."""
        ac = self.alphas_cumprod
        return 0.5 * (torch.log(ac) - torch.log1p(-ac))


def make_cosine_schedule(config: DiffusionConfig) -> Schedule:
    """Build the cosine schedule exactly as the original (spec 8.1), in float64.

    ``f(k) = cos((k/T + s) / (1 + s) * pi/2)^2 / f(0)`` for k = 0..T, ``beta_k = 1 - f(k+1)/f(k)``
    with no clipping (so beta_{T-1} = 1 and alpha_bar_{T-1} = 0), ``alpha_bar = cumprod(1-beta)``.
    The operation order follows the original so the fp64 values match it bit for bit.

    Raises:
        ValueError: for a beta schedule other than ``"cosine"``.
    """
    if config.beta_schedule != "cosine":
        raise ValueError(
            f"only the 'cosine' beta schedule is supported, got {config.beta_schedule!r}"
        )
    n = int(config.timesteps)
    s = float(config.cosine_s)
    k = torch.arange(n + 1, dtype=torch.float64) / n + s
    f = torch.cos(k / (1 + s) * math.pi / 2).pow(2)
    f = f / f[0]
    betas = 1 - f[1:] / f[:-1]
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    return Schedule(betas=betas, alphas_cumprod=alphas_cumprod)


def ddim_timesteps(steps: int, num_timesteps: int = 1000) -> Tensor:
    """The original's "uniform" DDIM step table, ascending (spec 8.3), with its crashes fixed.

    ``c = T // S``; steps ``[0, c, 2c, ...] (< T) + 1``. This runs ``ceil(T / c)`` steps, which
    is more than S when S does not divide T (S = 30 runs 31); that behaviour is kept so the
    supported counts give the identical table.

    Divergence from the original: where its last step would be ``T`` (c divides T - 1, e.g.
    S = 3, 9, 27, 101..111, 251..333) the original raises IndexError; here that last step is
    moved to ``T - 1`` (the zero-SNR step). For c = 1 (S = 501..1000) and S > T (c = 0) the
    table is every step ``0..T-1``. The result is always strictly increasing in [0, T - 1].

    Args:
        steps: requested number of DDIM steps S (>= 1).
        num_timesteps: T, the DDPM steps of the schedule.

    Returns:
        [N] int64 DDPM timesteps, ascending (sampling visits them in reverse).
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    steps, n = int(steps), int(num_timesteps)
    c = n // steps
    if c <= 1:
        # The original's table would end at T (c = 1) or divide by zero (c = 0): crash either way.
        log.debug("ddim_timesteps: %d steps -> every one of the %d DDPM steps", steps, n)
        return torch.arange(n, dtype=torch.int64)
    table = torch.arange(0, n, c, dtype=torch.int64) + 1
    if table[-1] >= n:
        # The original indexes alpha_bar[T] here and crashes; clamp to the last valid step.
        log.debug("ddim_timesteps: %d steps would visit step %d; using %d", steps, n, n - 1)
        table[-1] = n - 1
    return table


def ddim_coefficients(
    schedule: Schedule, timesteps: Tensor, eta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """DDIM tables (spec 8.4) in the original's dtypes: alphas fp32, alphas_prev and sigmas fp64.

    ``alpha_i = ac[t_i]`` from the fp32 ``alphas_cumprod`` buffer; ``alpha_prev_i = ac[t_{i-1}]``
    and ``ac[0]`` (not 1.0) for i = 0; ``sigma_i = eta * sqrt((1 - ap)/(1 - a) * (1 - a/ap))``.
    The original divides a float64 numpy array by an fp32 tensor, which torch evaluates as an
    fp32 reciprocal of ``1 - a`` times the float64 numerator; that quirk is reproduced so the
    sigmas match bit for bit.

    Args:
        schedule: the DDPM schedule.
        timesteps: [N] int64 DDPM steps, strictly increasing (e.g. :func:`ddim_timesteps`).
        eta: DDIM stochasticity (1.0 in the original, 0.0 deterministic).

    Returns:
        alphas [N] float32, alphas_prev [N] float64, sigmas [N] float64.
    """
    ts = timesteps.to(torch.int64).cpu()
    if ts.ndim != 1 or ts.numel() == 0 or bool((ts[1:] <= ts[:-1]).any()):
        raise ValueError(
            "ddim_coefficients needs a non-empty, strictly increasing 1-D timestep list"
        )
    ac = schedule.alphas_cumprod_f32
    alphas = ac[ts]
    alphas_prev = torch.cat([ac[:1], ac[ts[:-1]]]).double()
    ratio = torch.reciprocal(1 - alphas) * (1 - alphas_prev)  # fp32 reciprocal, fp64 product
    sigmas = eta * _sqrt64(ratio * (1 - alphas.double() / alphas_prev))
    return alphas, alphas_prev, sigmas


def _sqrt64(x: Tensor) -> Tensor:
    """Correctly rounded float64 square root (numpy's, as the original uses).

    torch's vectorised CPU float64 sqrt can differ from the correctly rounded value by one ulp,
    which would break bit-exact parity of the DDIM sigmas.
    """
    return torch.from_numpy(np.sqrt(x.detach().cpu().numpy()))


def v_to_x0(x: Tensor, v: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Clean-sample estimate from v: ``x0 = a * x_t - b * v``.

    Args:
        x: [B, C, H, W] noisy latent x_t.
        v: [B, C, H, W] the network's v prediction.
        a: sqrt(alpha_bar_t) (scalar or broadcastable tensor).
        b: sqrt(1 - alpha_bar_t).
    """
    return a * x - b * v


def v_to_eps(x: Tensor, v: Tensor, a: Tensor | float, b: Tensor | float) -> Tensor:
    """Noise estimate from v: ``eps = a * v + b * x_t`` (computed from v, not from x0).

    Args:
        x: [B, C, H, W] noisy latent x_t.
        v: [B, C, H, W] the network's v prediction.
        a: sqrt(alpha_bar_t).
        b: sqrt(1 - alpha_bar_t).
    """
    return a * v + b * x
