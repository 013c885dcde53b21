"""Replay the original's recorded DDIM runs with a denoiser that returns the recorded UNet outputs.

Every setting (steps, guidance, draw layout) comes from the golden meta and npz. For runs with
recorded model outputs, x_T and the per-step noises are the recorded draws and each step's
pred_x0 and x_prev are compared; runs without them check the timestep schedule only.
"""

from __future__ import annotations

import logging

import pytest
import torch

from audiosr.diffusion.guidance import classifier_free
from audiosr.diffusion.samplers import sample_ddim, timesteps_for
from audiosr.diffusion.schedule import ddim_timesteps, make_cosine_schedule

log = logging.getLogger(__name__)

ATOL_LATENT = 1e-3  # golden README: "DDIM latents atol 1e-3"


@pytest.fixture(scope="module")
def schedule(golden_config):
    return make_cosine_schedule(golden_config.diffusion)


def test_run_timesteps(golden, schedule):
    runs = golden.runs()
    assert runs, "the golden set has no recorded runs"
    for run in runs:
        steps = int(golden.meta[run]["ddim_steps"])
        visit = golden.t(f"{run}_timesteps")
        table = ddim_timesteps(steps, schedule.num_timesteps)
        assert torch.equal(table.flip(0), visit), run
        assert torch.equal(timesteps_for("ddim", steps, schedule), visit), run
        # Index into the ascending DDIM table of each executed step.
        indices = golden.t(f"{run}_indices")
        assert torch.equal(table[indices], visit), run


def _replay(golden, schedule, run: str) -> dict[str, float]:
    meta = golden.meta[run]
    steps = int(meta["ddim_steps"])
    guidance = float(meta["guidance"])
    visit = golden.t(f"{run}_timesteps")
    n_steps = visit.numel()
    # Draw order (spec 8.6): ..., x_T, then one draw per step; the last n_steps are step noises.
    n_draws = int(golden.scalar(f"{run}_n_randn"))
    first_step_draw = n_draws - n_steps
    x_t = golden.t(f"{run}_randn{first_step_draw - 1}")
    step_of_t = {int(t): i for i, t in enumerate(visit)}
    cond = golden.t(f"{run}_cond")
    uncond = torch.full_like(cond, -1.0)  # identity tag only: the outputs are recorded

    calls = []

    def model(x, t, c):
        i = step_of_t[int(t[0])]
        calls.append((i, x.shape[0]))
        v_c = golden.t(f"{run}_step{i}_model_cond")
        if x.shape[0] == 2 * cond.shape[0]:
            # Batched CFG pass: conditional half first, then the unconditional half.
            assert torch.equal(c[: cond.shape[0]], cond) and torch.equal(c[cond.shape[0] :], uncond)
            return torch.cat([v_c, golden.t(f"{run}_step{i}_model_uncond")])
        assert torch.equal(c, cond)
        return v_c

    denoiser = classifier_free(model, cond, uncond, guidance)
    records = []
    out = sample_ddim(
        denoiser,
        x_t,
        schedule,
        ddim_timesteps(steps, schedule.num_timesteps),
        eta=float(meta.get("eta", 1.0)),
        noise=lambda i: golden.t(f"{run}_randn{first_step_draw + i}"),
        callback=records.append,
    )
    assert [c[0] for c in calls] == list(range(n_steps))
    assert all(c[1] == (x_t.shape[0] if guidance == 1.0 else 2 * x_t.shape[0]) for c in calls)
    assert [r["t"] for r in records] == visit.tolist()
    errors = {"pred_x0": 0.0, "x_prev": 0.0}
    for i, rec in enumerate(records):
        ref_x0 = golden.t(f"{run}_step{i}_pred_x0")
        ref_x = golden.t(f"{run}_step{i}_x_prev")
        torch.testing.assert_close(rec["x0"], ref_x0, atol=ATOL_LATENT, rtol=0)
        torch.testing.assert_close(rec["x_next"], ref_x, atol=ATOL_LATENT, rtol=0)
        errors["pred_x0"] = max(errors["pred_x0"], (rec["x0"] - ref_x0).abs().max().item())
        errors["x_prev"] = max(errors["x_prev"], (rec["x_next"] - ref_x).abs().max().item())
    assert torch.equal(out, records[-1]["x_next"])
    return errors


def test_replay_recorded_runs(golden, schedule):
    replayed = 0
    for run in golden.runs():
        if f"{run}_step0_model_cond" not in golden:
            continue  # covered by test_run_timesteps
        errors = _replay(golden, schedule, run)
        log.info("%s replay max abs error: %s", run, errors)
        replayed += 1
    assert replayed, "no golden run records model outputs to replay"
