"""Samplers on an analytic problem, determinism, robustness for every step count, and CFG.

Analytic problem: every latent element is x0 ~ N(mu, s^2), independent. With a = sqrt(alpha_bar)
and b = sqrt(1 - alpha_bar), E[x0 | x_t] = mu + a s^2 (x_t - a mu) / (a^2 s^2 + b^2), so the exact
v = (a x_t - E[x0 | x_t]) / b is known for every t, and the probability-flow ODE keeps
z = (x_t - a mu) / std_t fixed (std_t^2 = a^2 s^2 + b^2): its exact solution is
x_t = a mu + std_t z. All of it runs in float64 so the solver error is what is measured.
"""

from __future__ import annotations

import math
from itertools import pairwise

import numpy as np
import pytest
import torch

from audiosr.config import DiffusionConfig
from audiosr.diffusion.guidance import classifier_free, concat_condition
from audiosr.diffusion.samplers import (
    SAMPLERS,
    sample_ddim,
    sample_dpmpp_2m,
    sample_unipc,
    timesteps_for,
)
from audiosr.diffusion.schedule import (
    ddim_timesteps,
    make_cosine_schedule,
    v_to_eps,
    v_to_x0,
)

MU, S = 0.3, 0.5


@pytest.fixture(scope="module")
def schedule():
    return make_cosine_schedule(DiffusionConfig())


class Gaussian:
    """Exact denoiser and exact ODE solution for data x0 ~ N(MU, S^2) per element."""

    def __init__(self, schedule):
        self.schedule = schedule
        self.calls = 0

    def std(self, t: int) -> tuple[float, float]:
        a, b = self.schedule.alpha_sigma(t)
        return a, math.sqrt(a * a * S * S + b * b)

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        assert t.dtype == torch.int64 and t.shape == (x.shape[0],)
        a, b = self.schedule.alpha_sigma(int(t[0]))
        x0 = MU + a * S * S * (x - a * MU) / (a * a * S * S + b * b)
        return (a * x - x0) / b

    def marginal(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """x_t on the exact ODE trajectory through standard score z."""
        a, std = self.std(t)
        return a * MU + std * z

    def x0_at(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """E[x0 | x_t] on the exact trajectory (what an ODE solver's final denoise returns)."""
        a, std = self.std(t)
        return MU + a * S * S * z / std


def _z(shape=(1, 1, 64, 64), seed=0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _slope(counts, errors) -> float:
    return float(np.polyfit(np.log(counts), np.log(errors), 1)[0])


@pytest.mark.parametrize("t", [0, 1, 500, 998, 999])
def test_v_conversions(schedule, t):
    x0, eps = _z(seed=1), _z(seed=2)
    a, b = schedule.alpha_sigma(t)
    x = a * x0 + b * eps
    v = a * eps - b * x0
    torch.testing.assert_close(v_to_x0(x, v, a, b), x0, atol=1e-12, rtol=0)
    torch.testing.assert_close(v_to_eps(x, v, a, b), eps, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("name", "max_slope"), [("dpmpp_2m", -1.8), ("unipc", -2.6)])
def test_ode_solver_order(schedule, name, max_slope):
    """Between finite log-SNRs the error falls as N^-2 (DPM-Solver++(2M)) and N^-3 (UniPC-2)."""
    problem = Gaussian(schedule)
    z = _z()
    start, end = 900, 100
    intervals = [20, 40, 80, 160]  # uniform integer grids from 900 to 100
    errors = []
    for k in intervals:
        ts = torch.arange(start, end - 1, -(start - end) // k)
        out = SAMPLERS[name](problem, problem.marginal(z, start), schedule, ts)
        errors.append((out - problem.x0_at(z, end)).abs().max().item())
    assert all(e1 > e2 for e1, e2 in pairwise(errors)), errors
    assert _slope(intervals, errors) <= max_slope, errors


@pytest.mark.parametrize(("name", "max_slope"), [("dpmpp_2m", -1.5), ("unipc", -2.2)])
def test_full_run_from_pure_noise(schedule, name, max_slope):
    """From t = 999 (zero SNR) with timesteps_for: converges to the exact flow and the data law."""
    problem = Gaussian(schedule)
    z = _z()
    counts = [16, 32, 64, 128]
    errors = []
    for n in counts:
        ts = timesteps_for(name, n, schedule)
        assert ts[0] == schedule.num_timesteps - 1 and ts[-1] == 0
        problem.calls = 0
        out = SAMPLERS[name](problem, z, schedule, ts)  # x_T = z: std is 1 at zero SNR
        assert problem.calls == n
        errors.append((out - problem.x0_at(z, 0)).abs().max().item())
    assert all(e1 > e2 for e1, e2 in pairwise(errors)), errors
    assert _slope(counts, errors) <= max_slope, errors
    assert errors[2] < 3e-3, errors
    # The samples follow the data distribution N(MU, S^2).
    assert abs(out.mean().item() - MU) < 4 * S / math.sqrt(out.numel())
    assert abs(out.std().item() / S - 1) < 0.05


def test_unipc_beats_dpmpp_2m(schedule):
    problem = Gaussian(schedule)
    z = _z()
    errs = {}
    for name in ("dpmpp_2m", "unipc"):
        out = SAMPLERS[name](problem, z, schedule, timesteps_for(name, 64, schedule))
        errs[name] = (out - problem.x0_at(z, 0)).abs().max().item()
    assert errs["unipc"] < errs["dpmpp_2m"], errs


def test_ddim_eta0_deterministic_first_order(schedule):
    problem = Gaussian(schedule)
    z = _z()
    generator = torch.Generator().manual_seed(5)
    state = generator.get_state()
    counts, errors = [10, 20, 40, 100], []
    for steps in counts:
        table = ddim_timesteps(steps)
        x_start = problem.marginal(z, int(table[-1]))
        out = sample_ddim(problem, x_start, schedule, table, eta=0.0, generator=generator)
        again = sample_ddim(problem, x_start, schedule, table, eta=0.0)
        assert torch.equal(out, again)
        # The last DDIM step lands on noise level alpha_bar[0] (x, not x0).
        errors.append((out - problem.marginal(z, 0)).abs().max().item())
    assert torch.equal(generator.get_state(), state), "eta=0 must not draw noise"
    assert _slope(counts, errors) <= -0.8, errors


def test_ddim_eta1_draws_once_per_step(schedule):
    x = _z((2, 3, 4, 5)).float()
    table = ddim_timesteps(10)
    problem = Gaussian(schedule)

    def run(seed):
        return sample_ddim(
            problem, x, schedule, table, generator=torch.Generator().manual_seed(seed)
        )

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
    # The generator draws float32 randn(x.shape) once per step, highest t first: a noise hook
    # that replays those draws gives the identical result.
    g = torch.Generator().manual_seed(3)
    draws = [torch.randn(x.shape, generator=g, dtype=torch.float32) for _ in range(len(table))]
    replay = sample_ddim(problem, x, schedule, table, noise=lambda i: draws[i])
    assert torch.equal(replay, run(3))


def test_ddim_callback_keys(schedule):
    records = []
    x = _z((1, 1, 2, 2))
    sample_ddim(Gaussian(schedule), x, schedule, ddim_timesteps(5), callback=records.append)
    assert [r["t"] for r in records] == ddim_timesteps(5).flip(0).tolist()
    assert [r["i"] for r in records] == list(range(5))
    assert set(records[0]) >= {"i", "t", "x", "x0", "v", "x_next"}
    assert all(torch.equal(a["x_next"], b["x"]) for a, b in pairwise(records))


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_step_count_runs(schedule, name):
    calls = []

    def cheap(x, t):
        calls.append(int(t[0]))
        return 0.5 * x + 0.01 * t[0].to(x.dtype)

    x = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(0))
    for steps in range(1, 201):
        ts = timesteps_for(name, steps, schedule)
        calls.clear()
        kwargs = {"generator": torch.Generator().manual_seed(0)} if name == "ddim" else {}
        out = SAMPLERS[name](cheap, x, schedule, ts, **kwargs)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert torch.isfinite(out).all(), (name, steps)
        assert calls == ts.tolist(), (name, steps)
        if name == "ddim":
            assert len(ts) == math.ceil(1000 / (1000 // steps))
        else:
            assert len(ts) == steps


@pytest.mark.parametrize("steps", [3, 9, 27, 101, 251, 501, 1000, 1500])
def test_ddim_original_crash_counts_run(schedule, steps):
    table = ddim_timesteps(steps)
    assert table[0] >= 0 and table[-1] == 999
    assert bool((table[1:] > table[:-1]).all())
    x = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    out = sample_ddim(
        lambda x, t: 0.5 * x, x, schedule, table, generator=torch.Generator().manual_seed(0)
    )
    assert torch.isfinite(out).all()


def test_ddim_timesteps_every_count(schedule):
    for steps in range(1, 1201):
        table = ddim_timesteps(steps).tolist()
        assert 0 <= table[0] and table[-1] <= 999 and table == sorted(set(table)), steps
        c = 1000 // steps
        original = [k + 1 for k in range(0, 1000, c)] if c else None
        if original is not None and original[-1] < 1000:
            assert table == original, steps  # counts the original supports: identical
    assert ddim_timesteps(30).numel() == 31  # the original runs ceil(1000 / 33) steps


def test_solvers_single_step_and_tiny_budgets(schedule):
    problem = Gaussian(schedule)
    z = _z((1, 1, 8, 8))
    # One call at zero SNR predicts the data mean exactly.
    out = sample_dpmpp_2m(problem, z, schedule, timesteps_for("dpmpp_2m", 1, schedule))
    torch.testing.assert_close(out, torch.full_like(z, MU), atol=1e-12, rtol=0)
    out = sample_unipc(problem, z, schedule, timesteps_for("unipc", 2, schedule))
    assert torch.isfinite(out).all()


def test_input_validation(schedule):
    with pytest.raises(ValueError, match="unknown sampler"):
        timesteps_for("euler", 10, schedule)
    with pytest.raises(ValueError, match="positive"):
        timesteps_for("unipc", 0, schedule)
    with pytest.raises(ValueError, match="positive"):
        ddim_timesteps(0)
    x = torch.zeros(1, 1, 2, 2)
    with pytest.raises(ValueError, match="monotone"):
        sample_dpmpp_2m(lambda x, t: x, x, schedule, torch.tensor([999, 500, 700]))
    with pytest.raises(ValueError, match=r"\[0, 999\]"):
        sample_ddim(lambda x, t: x, x, schedule, torch.tensor([1000, 1]))
    with pytest.raises(ValueError, match="order"):
        sample_unipc(lambda x, t: x, x, schedule, torch.tensor([999, 0]), order=5)


class CountingModel:
    """Per-item model (no cross-batch mixing): v = tanh(x + c) * (1 + t / 1000)."""

    def __init__(self):
        self.batches: list[int] = []

    def __call__(self, x, t, c):
        self.batches.append(x.shape[0])
        return torch.tanh(x + c) * (1 + t.to(x.dtype)[:, None, None, None] / 1000)


def test_classifier_free_guidance():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=gen)
    t = torch.tensor([7, 7])
    cond = torch.randn(2, 3, 4, 5, generator=gen)
    uncond = torch.full((1, 3, 4, 5), -1.5)

    model = CountingModel()
    v = classifier_free(model, cond, uncond, 1.0)(x, t)
    assert model.batches == [2]
    torch.testing.assert_close(v, model(x, t, cond))

    for scale in (0.0, 3.5):
        model = CountingModel()
        v = classifier_free(model, cond, uncond, scale)(x, t)
        assert model.batches == ([2] if scale == 0.0 else [4])  # one batched forward
        v_c = model(x, t, cond)
        v_u = model(x, t, uncond.expand_as(cond))
        torch.testing.assert_close(v, v_u + scale * (v_c - v_u), atol=1e-6, rtol=0)


def test_concat_condition():
    x = torch.randn(2, 16, 8, 4)
    cond = torch.randn(2, 16, 8, 4)
    out = concat_condition(x, cond, torch.tensor(0.37))
    assert out.shape == (2, 32, 8, 4)
    assert torch.equal(out[:, :16], x)
    assert torch.equal(out[:, 16:], torch.tensor(0.37) * cond)
