"""Cutoff heuristic (spec §3): golden conditioning cutoff and the scan's edge cases."""

from __future__ import annotations

import torch

from audiosr.dsp.cutoff import cutoff_hz_from_stft, locate_cutoff_bin


def test_golden_conditioning_cutoff(golden):
    k, hz = cutoff_hz_from_stft(golden.t("fe_stft_mag"))
    assert int(k) == golden.scalar("fe_cutoff_bin")
    assert float(hz) == golden.scalar("fe_cutoff_hz")


def test_cutoff_from_transposed_view_and_batch(golden):
    mag = golden.t("fe_stft_mag")
    view = mag.t().contiguous().t()  # same values, bins-major memory
    k, _ = cutoff_hz_from_stft(torch.stack([view, mag]))
    assert k.tolist() == [golden.scalar("fe_cutoff_bin")] * 2


def test_scan_returns_largest_bin_below_threshold():
    energy = torch.tensor([1.0, 1.0, 1.0, 1.0, 96.0])  # cumsum 1 2 3 4 100
    assert int(locate_cutoff_bin(energy, 0.985)) == 3
    assert int(locate_cutoff_bin(energy, 0.02)) == 0  # only C[0] < thr, and bin 0 is not tested
    flat = torch.ones(8)  # cumsum 1..8, thr = 0.5 * 8 = 4: largest k with C[k] < 4 is 2
    assert int(locate_cutoff_bin(flat, 0.5)) == 2
    batch = torch.stack([energy, torch.tensor([0.0, 0.0, 0.0, 0.0, 5.0])])
    assert locate_cutoff_bin(batch, 0.985).tolist() == [3, 3]
    assert locate_cutoff_bin(torch.zeros(2, 6)).tolist() == [0, 0]  # silence: nothing qualifies


def test_threshold_precision_matters_at_the_boundary():
    # C[1] = 0.75 * 2^24 exactly. In fp32, p rounds to 0.75 and the threshold equals C[1]
    # (not below it: k = 0); in fp64 the threshold is 2^-6 above C[1] (k = 1).
    total = torch.tensor(16_777_216.0)  # 2^24
    p = 0.75 + 2.0**-30  # fp64 threshold is just above 0.75 * 2^24; fp32 rounds it down to it
    energy = torch.tensor([0.0, 12_582_912.0, total.item() - 12_582_912.0])  # C[1] = 0.75 * 2^24
    assert int(locate_cutoff_bin(energy, p, torch.float32)) == 0
    assert int(locate_cutoff_bin(energy, p, torch.float64, "numpy")) == 1
