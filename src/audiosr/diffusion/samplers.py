"""Samplers: pure functions over a v-prediction denoiser (k-diffusion's contract).

Every sampler is called the same way,
``sample_x(denoiser, x, schedule, timesteps, *, eta, noise, callback, progress) -> x``
(:data:`SAMPLERS` maps names to them; the engine never special-cases one):

* ``denoiser(x_t [B, C, H, W], t [B] int64) -> v`` is any callable (the UNet wrapped by
  :func:`~audiosr.diffusion.guidance.classifier_free`);
* ``schedule`` is the float64 :class:`~audiosr.diffusion.schedule.Schedule`;
* ``timesteps`` are the integer DDPM steps to visit, strictly monotone; they are always visited
  from the largest to the smallest, so both the original's ascending DDIM table
  (:func:`~audiosr.diffusion.schedule.ddim_timesteps`) and the descending visiting lists of
  :func:`timesteps_for` are accepted.

``eta`` and ``noise`` (``noise(i)`` returns step i's fresh noise) drive the stochastic DDIM
steps; the ODE solvers are deterministic and accept them without using them.

``callback`` receives one dict per model evaluation: ``i`` (step number in visiting order),
``t`` (DDPM step), ``x`` (the input x_t), ``v``, ``x0`` (the clean estimate) and ``x_next``
(the sampler state after the step; for the ODE solvers' last step, their output).

Zero terminal SNR. The cosine schedule reaches alpha_bar = 0 at t = 999, so
lambda = log(alpha/sigma) is -inf there. The ODE solvers keep that step: leaving lambda = -inf
is the limit h -> inf of the exponential integrator, ``x_t = sigma_t * x_T + alpha_t * x0_hat``
(exact IEEE arithmetic: ``expm1(-inf) = -1``), and a history point at lambda = -inf is never
used for a higher-order difference (its weight vanishes in that limit), so the step after it is
first order.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import trange

from .guidance import Denoiser
from .schedule import Schedule, ddim_coefficients, ddim_timesteps, v_to_eps, v_to_x0

log = logging.getLogger(__name__)

Callback = Callable[[dict[str, Any]], None]
NoiseSource = Callable[[int], Tensor]


def _visit_order(timesteps: Tensor, schedule: Schedule) -> list[int]:
    """Validate a timestep list and return it as Python ints, largest first."""
    ts = [int(t) for t in torch.as_tensor(timesteps).reshape(-1).tolist()]
    n = schedule.num_timesteps
    if not ts:
        raise ValueError("timesteps is empty; pass at least one DDPM step")
    if any(t < 0 or t >= n for t in ts):
        raise ValueError(f"timesteps must lie in [0, {n - 1}], got {ts}")
    if len(ts) > 1 and ts[0] < ts[1]:
        ts = ts[::-1]
    if any(a <= b for a, b in pairwise(ts)):
        raise ValueError(f"timesteps must be strictly monotone (no repeats), got {ts}")
    return ts


def _t_batch(t: int, x: Tensor) -> Tensor:
    return torch.full((x.shape[0],), t, dtype=torch.int64, device=x.device)


def sample_ddim(
    denoiser: Denoiser,
    x: Tensor,
    schedule: Schedule,
    timesteps: Tensor,
    *,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    noise: NoiseSource | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """DDIM (Song et al., 2021, Eq. 12) exactly as AudioSR's original sampler (spec 8.5).

    Per step, with a_t, b_t from the fp32 ``sqrt_alphas_cumprod`` /
    ``sqrt_one_minus_alphas_cumprod`` buffers and the DDIM table of
    :func:`~audiosr.diffusion.schedule.ddim_coefficients` rounded to fp32 scalars::

        eps = a_t v + b_t x;   x0 = a_t x - b_t v
        x   = sqrt(ap) x0 + sqrt(1 - ap - sigma^2) eps + sigma n

    with ``ap = alpha_bar`` of the next smaller table entry (``alpha_bar[0]`` after the last
    step, so the output sits at noise level alpha_bar[0], not at a clean sample: the original's
    behaviour). The result is that final x, not x0. No clipping of x0.

    Randomness: with ``eta > 0`` one ``randn(x.shape)`` in float32 is drawn on the generator's
    device at every step (then moved to ``x``), matching the original's draw order so a seeded
    generator replays it. With ``eta == 0`` (deterministic DDIM) nothing is drawn and the
    generator is untouched (and ``noise`` is never called); the original would still draw
    the noise.

    Args:
        denoiser: ``(x_t, t) -> v``.
        x: [B, C, H, W] starting latent x_T (the original uses ``randn``).
        schedule: the DDPM schedule.
        timesteps: DDIM table (e.g. :func:`ddim_timesteps`), visited from the largest.
        eta: stochasticity (1.0 in the original).
        generator: source of the per-step noise; None uses torch's default generator of
            ``x``'s device.
        noise: replaces the draws: ``noise(i)`` returns the [B, C, H, W] noise of step i (visiting
            order), e.g. recorded draws for a replay.
        callback: called once per step (see module docstring).
        progress: show a progress bar.

    Returns:
        [B, C, H, W] the final latent.
    """
    visit = _visit_order(timesteps, schedule)
    table = torch.tensor(visit[::-1], dtype=torch.int64)
    _, alphas_prev, sigmas = ddim_coefficients(schedule, table, eta)
    # The original fills fp32 tensors with each coefficient and does the scalar arithmetic in
    # fp32; doing it here for all steps at once gives the same values elementwise.
    a_prev = alphas_prev.float()
    sigma = sigmas.float()
    # clamp: 1 - ap - sigma^2 is >= 0 exactly but can round below 0 when alpha_bar_t = 0.
    dir_coef = (1.0 - a_prev - sigma**2).clamp_min(0.0).sqrt()
    coefs = torch.stack(
        [
            schedule.sqrt_alphas_cumprod_f32[table],
            schedule.sqrt_one_minus_alphas_cumprod_f32[table],
            a_prev.sqrt(),
            dir_coef,
            sigma,
        ]
    ).to(device=x.device, dtype=x.dtype)
    n = len(visit)
    for i in trange(n, disable=not progress):
        t = visit[i]
        a_t, b_t, sqrt_a_prev, c_dir, sigma_t = coefs[:, n - 1 - i]  # ascending-table index
        v = denoiser(x, _t_batch(t, x))
        eps = v_to_eps(x, v, a_t, b_t)
        x0 = v_to_x0(x, v, a_t, b_t)
        x_next = sqrt_a_prev * x0 + c_dir * eps
        if eta != 0.0:
            if noise is not None:
                n_t = noise(i)
            else:
                device = generator.device if generator is not None else x.device
                n_t = torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32)
            x_next = x_next + sigma_t * n_t.to(device=x.device, dtype=x.dtype)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "v": v, "x0": x0, "x_next": x_next})
        x = x_next
    return x


def _ode_terms(schedule: Schedule, visit: list[int]) -> list[tuple[float, float, float]]:
    """(alpha_t, sigma_t, lambda_t) as float64 scalars for each visited step."""
    return [(*schedule.alpha_sigma(t), schedule.log_snr(t)) for t in visit]


def sample_dpmpp_2m(
    denoiser: Denoiser,
    x: Tensor,
    schedule: Schedule,
    timesteps: Tensor,
    *,
    eta: float = 0.0,
    noise: NoiseSource | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al., 2022, Algorithm 2): data prediction, lambda = log(alpha/sigma).

    From s = t_{i-1} to t = t_i, with h = lambda_t - lambda_s and r = h_{i-1} / h::

        D   = (1 + 1/(2r)) x0_s - 1/(2r) x0_{s'}      (first order: D = x0_s)
        x_t = (sigma_t / sigma_s) x_s - alpha_t expm1(-h) D

    All coefficients are float64 scalars from the schedule. The first step, and the step after a
    lambda = -inf point (t = 999), are first order. N timesteps cost N model calls and the result
    is the clean estimate x0 at the last (smallest) timestep, the usual final denoising step.

    Args:
        denoiser: ``(x_t, t) -> v``.
        x: [B, C, H, W] latent at the first visited timestep (pure noise when it is 999).
        schedule: the DDPM schedule.
        timesteps: DDPM steps, visited from the largest (e.g. :func:`timesteps_for`).
        eta: unused (deterministic solver; part of the common sampler signature).
        noise: unused (likewise).
        callback: called once per model evaluation.
        progress: show a progress bar.

    Returns:
        [B, C, H, W] the clean estimate x0.
    """
    del eta, noise
    visit = _visit_order(timesteps, schedule)
    terms = _ode_terms(schedule, visit)
    x0_prev: Tensor | None = None
    for i in trange(len(visit), disable=not progress):
        alpha_s, sigma_s, lam_s = terms[i]
        v = denoiser(x, _t_batch(visit[i], x))
        x0 = v_to_x0(x, v, alpha_s, sigma_s)
        if i == len(visit) - 1:
            x_next = x0
        else:
            alpha_t, sigma_t, lam_t = terms[i + 1]
            h = lam_t - lam_s
            d = x0
            lam_prev = terms[i - 1][2] if i > 0 else -math.inf
            if x0_prev is not None and math.isfinite(lam_prev):
                # Second-order multistep correction; 1/(2r) = h / (2 h_prev), h_prev finite.
                half_inv_r = 0.5 * h / (lam_s - lam_prev)
                d = (1.0 + half_inv_r) * x0 - half_inv_r * x0_prev
            x_next = (sigma_t / sigma_s) * x - (alpha_t * math.expm1(-h)) * d
        if callback is not None:
            callback({"i": i, "t": visit[i], "x": x, "v": v, "x0": x0, "x_next": x_next})
        x0_prev, x = x0, x_next
    return x


def _hphi(hh: float, count: int) -> list[float]:
    """``hh * phi_{k+1}(hh)`` for k = 1..count, the phi functions of exponential integrators.

    ``phi_0(z) = e^z``, ``phi_{k+1}(z) = (phi_k(z) - 1/k!) / z``. For |z| < 1 the recurrence
    cancels badly, so the Taylor series ``phi_k(z) = sum_n z^n / (n + k)!`` is used instead;
    the recurrence also gives the right limit -1/k! at z = -inf (a step leaving zero SNR).
    """
    if abs(hh) < 1.0:
        out = []
        for k in range(2, count + 2):
            term, series = 1.0 / math.factorial(k), 0.0
            for n in range(1, 20):  # |hh| < 1: 19 terms reach float64 precision
                series += term
                term *= hh / (n + k)
            out.append(hh * series)
        return out
    out = [math.expm1(hh) / hh - 1.0]
    for k in range(2, count + 1):
        out.append(out[-1] / hh - 1.0 / math.factorial(k))
    return out


def _unipc_update(
    x_s: Tensor,
    x0_s: Tensor,
    lam_s: float,
    sigma_s: float,
    target: tuple[float, float, float],
    history: list[tuple[Tensor, float]],
    x0_t: Tensor | None,
) -> Tensor:
    """One UniPC-bh2 update from s to t: predictor (``x0_t`` None) or corrector.

    Data prediction with ``B(h) = expm1(-h)`` (variant bh2, Zhao et al., 2023, Eq. 8 and 12)::

        x_t = (sigma_t / sigma_s) x_s - alpha_t B(h) x0_s - alpha_t B(h) sum_m rho_m D_m

    with D_m = (x0_m - x0_s) / r_m, r_m = (lambda_m - lambda_s) / h for the older points in
    ``history`` (and r = 1, D = x0_t - x0_s for the corrector). rho solves
    ``sum_m rho_m r_m^(k-1) = k! hh phi_{k+1}(hh) / B(h)``, k = 1..p, hh = -h. With a single
    difference the paper's simplified rho = 1/2 is used; it is also the exact weight for the step
    leaving zero SNR, where x0_hat is linear in alpha ~ e^lambda rather than in lambda.

    Args:
        target: (alpha_t, sigma_t, lambda_t) of the step to reach.
    """
    alpha_t, sigma_t, lam_t = target
    h = lam_t - lam_s
    b_h = math.expm1(-h)
    x_next = (sigma_t / sigma_s) * x_s - (alpha_t * b_h) * x0_s
    rks = [(lam_m - lam_s) / h for _, lam_m in history]
    diffs = [(x0_m - x0_s) / r for (x0_m, _), r in zip(history, rks, strict=True)]
    if x0_t is not None:
        rks.append(1.0)
        diffs.append(x0_t - x0_s)
    p = len(rks)
    if p == 0:
        return x_next
    if p == 1:
        rhos = [0.5]
    else:
        g = _hphi(-h, p)
        rhs = [g[k] * math.factorial(k + 1) / b_h for k in range(p)]
        mat = [[r**k for r in rks] for k in range(p)]
        rhos = np.linalg.solve(np.array(mat), np.array(rhs)).tolist()
    res = rhos[0] * diffs[0]
    for rho, d in zip(rhos[1:], diffs[1:], strict=True):
        res = res + rho * d
    return x_next - (alpha_t * b_h) * res


def sample_unipc(
    denoiser: Denoiser,
    x: Tensor,
    schedule: Schedule,
    timesteps: Tensor,
    *,
    order: int = 2,
    eta: float = 0.0,
    noise: NoiseSource | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> Tensor:
    """UniPC-bh2 (Zhao et al., 2023, Algorithm 3): UniP-p predictor, UniC corrector, x0 prediction.

    Each model call at t_i first corrects x_{t_i} with the new x0 estimate (UniC, order p + 1,
    no extra call: the estimate at the uncorrected x is reused), then predicts x_{t_{i+1}} with
    UniP-p from the last p estimates (warming up from first order). History points at
    lambda = -inf (t = 999) are not used for differences. N timesteps cost N model calls; the
    result is the clean estimate x0 at the last timestep (no correction after the last call).

    Args:
        denoiser: ``(x_t, t) -> v``.
        x: [B, C, H, W] latent at the first visited timestep (pure noise when it is 999).
        schedule: the DDPM schedule.
        timesteps: DDPM steps, visited from the largest (e.g. :func:`timesteps_for`).
        order: predictor order p (1..3).
        eta: unused (deterministic solver; part of the common sampler signature).
        noise: unused (likewise).
        callback: called once per model evaluation (``x`` is the corrected x_t).
        progress: show a progress bar.

    Returns:
        [B, C, H, W] the clean estimate x0.
    """
    del eta, noise
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    visit = _visit_order(timesteps, schedule)
    terms = _ode_terms(schedule, visit)
    past: list[tuple[Tensor, float]] = []  # (x0, lambda) of earlier calls, newest last
    # What the last predictor used: (x_s, x0_s, lambda_s, sigma_s, history), for the corrector.
    prev: tuple[Tensor, Tensor, float, float, list[tuple[Tensor, float]]] | None = None
    for i in trange(len(visit), disable=not progress):
        alpha_t, sigma_t, lam_t = terms[i]
        v = denoiser(x, _t_batch(visit[i], x))
        x0 = v_to_x0(x, v, alpha_t, sigma_t)
        last = i == len(visit) - 1
        if prev is not None and not last:
            # UniC: same base and history as the predictor that produced x, plus the new x0.
            x = _unipc_update(*prev[:4], terms[i], prev[4], x0)
        if last:
            x_next = x0
        else:
            usable = [(m, lam) for m, lam in past if math.isfinite(lam)]
            used = usable[len(usable) - (order - 1) :][::-1] if order > 1 else []  # newest first
            x_next = _unipc_update(x, x0, lam_t, sigma_t, terms[i + 1], used, None)
            prev = (x, x0, lam_t, sigma_t, used)
        if callback is not None:
            callback({"i": i, "t": visit[i], "x": x, "v": v, "x0": x0, "x_next": x_next})
        past = [*past, (x0, lam_t)][-order:]
        x = x_next
    return x


def timesteps_for(sampler: str, steps: int, schedule: Schedule) -> Tensor:
    """The DDPM steps a sampler visits for a step budget, in visiting order (largest first).

    * ``"ddim"``: the original's table (:func:`ddim_timesteps`, crash counts fixed), so the
      number of steps is ``ceil(T / (T // steps))`` as in the original.
    * ``"dpmpp_2m"``, ``"unipc"``: exactly ``min(steps, T)`` model calls. The first is at T-1
      (pure noise, zero SNR, where the model was trained to start; Lin et al., 2024); the jump
      from there goes to the first step of a uniform-in-time grid,
      ``t_1 = round((T-1)(1 - 1/(steps-1)))``; the remaining steps are uniform in
      lambda = log(alpha/sigma) from lambda(t_1) down to lambda(0), as DPM-Solver recommends.
      Uniform-in-time spacing alone ends with a few very large lambda steps near t = 0 (the
      cosine schedule's lambda runs from 1.4 to 5.0 over the last 143 of 1000 steps), where
      the multistep extrapolation amplifies errors. Integer rounding can merge neighbouring
      steps near t = 0; they are then pushed apart so the count stays exact.

    Raises:
        ValueError: unknown sampler or non-positive ``steps``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    n = schedule.num_timesteps
    if sampler == "ddim":
        return ddim_timesteps(int(steps), n).flip(0)
    count = min(int(steps), n)
    if count <= 2:
        return torch.tensor([n - 1, 0][:count], dtype=torch.int64)
    t1 = round((n - 1) * (1.0 - 1.0 / (count - 1)))
    # -lambda increases with t (finite up to t_1 <= T-2): nearest step of each target,
    # listed from t = 0 upwards.
    neg_lam = -schedule.log_snrs[: t1 + 1].numpy()
    targets = np.linspace(neg_lam[0], neg_lam[t1], count - 1)
    above = np.clip(np.searchsorted(neg_lam, targets), 1, t1)
    below = above - 1
    closer_below = (targets - neg_lam[below]) <= (neg_lam[above] - targets)
    grid = np.where(closer_below, below, above).tolist()
    for j in range(1, len(grid)):  # separate merged steps, bottom up ...
        grid[j] = max(grid[j], grid[j - 1] + 1)
    grid[-1] = t1
    for j in range(len(grid) - 2, -1, -1):  # ... and keep the top at t_1
        grid[j] = min(grid[j], grid[j + 1] - 1)
    return torch.tensor([n - 1, *grid[::-1]], dtype=torch.int64)


SAMPLERS: dict[str, Callable[..., Tensor]] = {
    "ddim": sample_ddim,
    "dpmpp_2m": sample_dpmpp_2m,
    "unipc": sample_unipc,
}
