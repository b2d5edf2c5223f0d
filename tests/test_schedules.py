"""Schedules vs closed forms and the spec tables (mssfs §5.1-5.2, diffmotion §4, §10.3.1)."""
import math
from decimal import Decimal

import pytest
import torch

from models.diffusion import schedules as S


def _half_unit(s: str) -> float:
    """Half a unit in the last printed digit of a spec number (its rounding precision)."""
    return 0.5 * 10.0 ** Decimal(s).as_tuple().exponent


# mssfs §5.1: t, beta_t, alpha_bar_t, sqrt(alpha_bar_t), sqrt(1 - alpha_bar_t)
MSSFS_TABLE = [
    ("0", "1.565e-4", "0.99984", "0.99992", "0.0125"),
    ("50", "2.92e-3", "0.92516", "0.9619", "0.2736"),
    ("100", "6.13e-3", "0.73833", "0.8593", "0.5115"),
    ("150", "1.05e-2", "0.48865", "0.6990", "0.7151"),
    ("200", "1.81e-2", "0.24198", "0.4919", "0.8706"),
    ("232", "2.80e-2", "0.116329", "0.3411", "0.9400"),
    ("250", "3.87e-2", "0.06341", "0.2518", "0.9678"),
    ("299", "0.9999", "2.70e-9", "5.19e-5", "1.0"),
]


def test_cosine_matches_mssfs_table():
    betas, ab = S.cosine_betas(300), S.cosine_alpha_bar(300)
    assert ab.dtype == torch.float64 and ab.shape == (300,)
    for row in MSSFS_TABLE:
        t = int(row[0])
        got = [betas[t].item(), ab[t].item(), ab[t].sqrt().item(), (1 - ab[t]).sqrt().item()]
        for g, s in zip(got, row[1:]):
            # Printed precision, or 1e-5 relative where the table gives that many digits (A2).
            tol = max(_half_unit(s), 1e-5 * abs(float(s)))
            assert abs(g - float(s)) <= tol * 1.0001, (t, s, g)
    assert abs(ab[232].item() - 0.116329) <= 1e-5 * 0.116329
    assert betas[299].item() == 0.9999
    # Only beta_299 is clipped, so below it alpha_bar telescopes to the closed form f(t + 1) / f(0) (Nichol & Dhariwal
    # eq. 17), an independent route to the same numbers (float64 throughout: agreement to ~1e-15).
    f = lambda u: math.cos((u / 300 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    closed = torch.tensor([f(t + 1) / f(0) for t in range(299)], dtype=torch.float64)
    torch.testing.assert_close(ab[:299], closed, rtol=1e-12, atol=0)
    assert ab[299].item() == pytest.approx(ab[298].item() * (1 - 0.9999), rel=1e-12)


def test_linear_closed_form():
    ab = S.linear_alpha_bar(1000)
    b = torch.linspace(1e-4, 2e-2, 1000, dtype=torch.float64)
    assert torch.allclose(ab[[0, 499, 999]], torch.stack([1 - b[0], (1 - b[:500]).prod(), (1 - b).prod()]))
    assert abs(ab[-1].item() - 4.035e-5) < 1e-7  # well-known DDPM value, alpha_bar_T ~ 4.0e-5


@pytest.mark.parametrize("ab", [S.cosine_alpha_bar(300), S.cosine_alpha_bar(1000), S.linear_alpha_bar(1000),
                                torch.sigmoid(S.discrete_logsnr_table())])
def test_alpha_bar_monotone_in_unit_interval(ab):
    assert (ab > 0).all() and (ab < 1).all()
    assert (ab[1:] < ab[:-1]).all()


def test_betas_alpha_bar_roundtrip():
    ab = S.cosine_alpha_bar(300)
    assert torch.allclose(S.betas_to_alpha_bar(S.alpha_bar_to_betas(ab)), ab, rtol=1e-12, atol=0)


def test_logsnr_cosine_closed_forms():
    # diffmotion §4.1: a = atan(e^-7.5), b = atan(e^7.5); shift 0.125.
    a, b = S._cosine_ab(-15.0, 15.0)
    assert abs(a - 5.5308e-4) < 1e-8 and abs(b - 1.5702432) < 1e-7
    lam = S.logsnr_cosine(torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64), shift=0.125)
    assert torch.allclose(lam, torch.tensor([10.841, -4.159, -19.159], dtype=torch.float64), atol=1e-3)
    for lo, hi, sh in [(-15, 15, 1.0), (-10, 20, 0.5), (-20, 8, 2.0)]:
        ends = S.logsnr_cosine(torch.tensor([0.0, 1.0], dtype=torch.float64), lo, hi, sh)
        assert torch.allclose(ends, torch.tensor([hi, lo], dtype=torch.float64) + 2 * math.log(sh), atol=1e-9)
    # Unshifted cosine is symmetric about t = 1/2 (lambda(1/2) = 0 for a symmetric range), alpha_bar = cos^2-like.
    assert abs(S.logsnr_cosine(0.5).item()) < 1e-9
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    assert (S.logsnr_cosine(t).diff() < 0).all()
    assert torch.allclose(S.logsnr_cosine_inverse(S.logsnr_cosine(t, shift=0.3), shift=0.3), t, atol=1e-9)


def test_logsnr_cosine_interpolated():
    t = torch.linspace(0, 1, 201, dtype=torch.float64)
    lam = S.logsnr_cosine_interpolated(t, shift_lo=0.5, shift_hi=1 / 16)
    assert abs(lam[0].item() - (15 + 2 * math.log(0.5))) < 1e-9      # t = 0 uses shift_lo
    assert abs(lam[-1].item() - (-15 + 2 * math.log(1 / 16))) < 1e-9  # t = 1 uses shift_hi
    assert (lam.diff() < 0).all()
    same = S.logsnr_cosine_interpolated(t, 0.25, 0.25)
    assert torch.allclose(same, S.logsnr_cosine(t, shift=0.25), atol=1e-12)
    # Lies between the two single-shift curves.
    a, b = S.logsnr_cosine(t, shift=0.5), S.logsnr_cosine(t, shift=1 / 16)
    assert ((lam <= a + 1e-12) & (lam >= b - 1e-12)).all()


def test_conversion_roundtrips():
    lam = torch.linspace(-20, 20, 401, dtype=torch.float64)
    alpha, sigma = S.alpha_sigma(lam)
    assert torch.allclose(alpha ** 2 + sigma ** 2, torch.ones_like(lam), atol=1e-14)
    assert torch.allclose(torch.log(alpha ** 2 / sigma ** 2), lam, atol=1e-9)
    assert torch.allclose(S.alpha_bar_to_logsnr(S.logsnr_to_alpha_bar(lam)), lam, atol=1e-7)
    mid = lam[(lam > -12) & (lam < 12)]  # sigma -> logsnr loses precision once sigma^2 < ~1e-6
    assert torch.allclose(S.sigma_to_logsnr(S.logsnr_to_sigma(mid)), mid, atol=1e-7)
    sig = torch.linspace(0.01, 0.99, 99, dtype=torch.float64)
    assert torch.allclose(S.logsnr_to_sigma(S.sigma_to_logsnr(sig)), sig, atol=1e-12)
    ab = S.cosine_alpha_bar(300)
    assert torch.allclose(S.logsnr_to_alpha_bar(S.alpha_bar_to_logsnr(ab)), ab, rtol=1e-10)


# diffmotion §4.2: k, lambda_k, sqrt(alpha_bar_k), c_noise = 0.125 lambda_k
DIFFMOTION_TABLE = list(zip(
    "299 293 287 269 239 209 179 149 119 89 59 29 17 11 5".split(),
    "-15.0 -6.88 -5.51 -3.67 -2.24 -1.34 -0.63 0.01 0.65 1.37 2.28 3.74 4.82 5.68 7.24".split(),
    "6e-4 0.032 0.064 0.157 0.310 0.456 0.590 0.709 0.811 0.893 0.952 0.988 0.996 0.998 0.9996".split(),
    "-1.875 -0.86 -0.69 -0.46 -0.28 -0.17 -0.08 0.00 0.08 0.17 0.28 0.47 0.60 0.71 0.905".split(),
))


def test_discrete_logsnr_table_diffmotion():
    lam = S.discrete_logsnr_table()
    direct = S.discrete_logsnr_table(via_betas=False)
    assert lam.shape == (300,) and lam.dtype == torch.float64
    assert abs(lam[0].item() - 15.0) < 1e-6 and abs(lam[-1].item() + 15.0) < 1e-6
    assert (lam - direct).abs().max() < 1e-6  # "the difference is negligible"
    for k, l_s, a_s, c_s in DIFFMOTION_TABLE:
        k = int(k)
        got = [lam[k].item(), torch.sigmoid(lam[k]).sqrt().item(), 0.125 * lam[k].item()]
        for g, s in zip(got, (l_s, a_s, c_s)):
            assert abs(g - float(s)) <= _half_unit(s) + 1e-3, (k, s, g)  # spec rounding + 1e-3 (§10.3.1)
    shifted = S.discrete_logsnr_table(shift=0.125, via_betas=False)
    assert torch.allclose(shifted, direct + 2 * math.log(0.125), atol=1e-12)


def test_ddim_timesteps_round_mssfs():
    expected = [int(v) for v in (
        "299 293 287 281 275 268 262 256 250 244 238 232 226 220 214 207 201 195 189 183 177 171 165 159 153 146 "
        "140 134 128 122 116 110 104 98 92 85 79 73 67 61 55 49 43 37 31 24 18 12 6 0").split()]
    ts = S.ddim_timesteps_round(300, 50)
    assert ts == expected
    assert ts[8] == 250 and ts[11] == 232 and ts[15] == 207 and ts[40] == 55
    assert sum(t <= 232 for t in ts) == 39


def test_ddim_timesteps_floor_diffmotion():
    ts = S.ddim_timesteps_floor(300, 50)
    assert len(ts) == 51
    assert ts == list(range(299, -2, -6))
    assert ts[:3] == [299, 293, 287] and ts[-3:] == [11, 5, -1]
    # Integer part truncates toward zero: linspace(-1, 9, 4) = [-1, 2.33, 5.67, 9] -> [9, 5, 2, -1] (rounding: 6).
    assert S.ddim_timesteps_floor(10, 3) == [9, 5, 2, -1]
    for bad in [(300, 0), (10, 11)]:
        with pytest.raises(ValueError):
            S.ddim_timesteps_floor(*bad)
        with pytest.raises(ValueError):
            S.ddim_timesteps_round(*bad)


def test_abar_sequence():
    ab = S.cosine_alpha_bar(300)
    seq = S.abar_sequence(ab, S.ddim_timesteps_round(300, 50))
    assert len(seq) == 51 and seq[0] == ab[299].item() and seq[-2] == ab[0].item() and seq[-1] == 1.0
    seq = S.abar_sequence(ab, S.ddim_timesteps_floor(300, 50))
    assert len(seq) == 51 and seq[-1] == 1.0 and seq[-2] == ab[5].item()
