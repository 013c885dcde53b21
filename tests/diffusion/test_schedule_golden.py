"""Schedule buffers and DDIM tables against the original's recorded values (golden README)."""

from __future__ import annotations

import numpy as np
import pytest

from audiosr.diffusion.schedule import (
    ddim_coefficients,
    ddim_timesteps,
    make_cosine_schedule,
)

# fp32 buffers and tables come out of identical fp32 arithmetic: exact. fp64 ones: 1e-12 relative.
RTOL_F64 = 1e-12


@pytest.fixture(scope="module")
def schedule(golden_config):
    return make_cosine_schedule(golden_config.diffusion)


def test_fp64_schedule(golden, schedule):
    for key, ours in (
        ("sch_betas_f64", schedule.betas),
        ("sch_alphas_cumprod_f64", schedule.alphas_cumprod),
    ):
        ref = golden[key]
        assert ours.numpy().dtype == ref.dtype == np.float64
        np.testing.assert_allclose(ours.numpy(), ref, rtol=RTOL_F64, atol=0, err_msg=key)
    # Zero terminal SNR: the original does not clip beta.
    assert schedule.alphas_cumprod[-1] == golden["sch_alphas_cumprod_f64"][-1]


def test_fp32_buffers_exact(golden, schedule):
    buffers = schedule.buffers()
    for name in (
        "betas",
        "alphas_cumprod",
        "alphas_cumprod_prev",
        "sqrt_alphas_cumprod",
        "sqrt_one_minus_alphas_cumprod",
    ):
        ref = golden[f"sch_{name}"]
        ours = buffers[name].numpy()
        assert ours.dtype == ref.dtype == np.float32, name
        np.testing.assert_array_equal(ours, ref, err_msg=name)


def test_ddim_tables(golden, schedule):
    counts = golden.ddim_step_counts()
    assert counts, "the golden set has no ddim tables"
    for steps in counts:
        ref_ts = golden[f"ddim{steps}_timesteps"]
        ts = ddim_timesteps(steps, schedule.num_timesteps)
        np.testing.assert_array_equal(ts.numpy(), ref_ts, err_msg=f"S={steps}")

        alphas, alphas_prev, sigmas = ddim_coefficients(schedule, ts, eta=1.0)
        ref_a = golden[f"ddim{steps}_alphas"]
        assert alphas.numpy().dtype == ref_a.dtype == np.float32
        np.testing.assert_array_equal(alphas.numpy(), ref_a, err_msg=f"alphas S={steps}")
        for name, ours in (("alphas_prev", alphas_prev), ("sigmas_eta1", sigmas)):
            ref = golden[f"ddim{steps}_{name}"]
            assert ours.numpy().dtype == ref.dtype == np.float64
            np.testing.assert_allclose(
                ours.numpy(), ref, rtol=RTOL_F64, atol=0, err_msg=f"{name} S={steps}"
            )
