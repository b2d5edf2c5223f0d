"""Parameterization round trips, loss weightings and the diffmotion loss checks (§4.1, §10.3.2-3)."""
import math

import pytest
import torch

from models.diffusion import losses as L
from models.diffusion import parameterization as P
from models.diffusion.schedules import alpha_sigma, logsnr_cosine


def _state(shape=(4, 3, 2, 5, 5), coef_shape=(4,), seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    lam = torch.rand(coef_shape, generator=g, dtype=torch.float64) * 16 - 8
    alpha, sigma = alpha_sigma(lam)
    x_t = P.append_dims(alpha, x0) * x0 + P.append_dims(sigma, x0) * eps
    return x0, eps, x_t, alpha, sigma, lam


@pytest.mark.parametrize("coef_shape", [(4,), (4, 3), (4, 3, 1, 1, 1), ()])
def test_parameterization_roundtrips(coef_shape):
    x0, eps, x_t, alpha, sigma, _ = _state(coef_shape=coef_shape)
    v = P.v_from_eps_x0(eps, x0, alpha, sigma)
    tol = dict(atol=1e-10, rtol=0)
    assert torch.allclose(P.x0_from_eps(x_t, eps, alpha, sigma), x0, **tol)
    assert torch.allclose(P.eps_from_x0(x_t, x0, alpha, sigma), eps, **tol)
    assert torch.allclose(P.x0_from_v(x_t, v, alpha, sigma), x0, **tol)
    assert torch.allclose(P.eps_from_v(x_t, v, alpha, sigma), eps, **tol)
    assert torch.allclose(P.v_from_x0(x_t, x0, alpha, sigma), v, **tol)
    assert torch.allclose(P.v_from_eps(x_t, eps, alpha, sigma), v, **tol)
    truth = {"eps": eps, "x0": x0, "v": v}
    for src in P.PREDICTIONS:
        xh, eh = P.predict_x0_eps(x_t, truth[src], alpha, sigma, src)
        assert torch.allclose(xh, x0, **tol) and torch.allclose(eh, eps, **tol)
        for dst in P.PREDICTIONS:
            assert torch.allclose(P.convert_prediction(x_t, truth[src], alpha, sigma, src, dst), truth[dst], **tol)
    assert P.make_target(x0, eps, alpha, sigma, "eps") is eps and P.make_target(x0, eps, alpha, sigma, "x0") is x0
    # v is the velocity of x_t along the VP circle: with alpha = cos(phi), sigma = sin(phi), v = d x_t / d phi
    # (Salimans & Ho 2022, Sec. 4). Check the target against a central difference of the forward process.
    phi, h = torch.atan2(sigma, alpha), 1e-6
    x_at = lambda p: P.append_dims(p.cos(), x0) * x0 + P.append_dims(p.sin(), x0) * eps  # noqa: E731
    torch.testing.assert_close(P.make_target(x0, eps, alpha, sigma, "v"), (x_at(phi + h) - x_at(phi - h)) / (2 * h),
                               atol=1e-8, rtol=0)
    with pytest.raises(ValueError, match="unknown prediction kind"):
        P.make_target(x0, eps, alpha, sigma, "score")


def test_float_coefficients_and_errors():
    x0, eps, x_t, *_ = _state(coef_shape=())
    a, s = math.sqrt(0.3), math.sqrt(0.7)
    x_t = a * x0 + s * eps
    assert torch.allclose(P.x0_from_v(x_t, P.v_from_eps_x0(eps, x0, a, s), a, s), x0, atol=1e-12)
    with pytest.raises(ValueError):
        P.predict_x0_eps(x_t, eps, a, s, "score")
    with pytest.raises(ValueError):
        P.append_dims(torch.ones(1, 1, 1, 1, 1, 1), x_t)


def test_eps_error_equals_alpha_times_v_error():
    # diffmotion §4.1 identity: eps_hat - eps = alpha (v_hat - v).
    x0, eps, x_t, alpha, sigma, _ = _state()
    v = P.v_from_eps_x0(eps, x0, alpha, sigma)
    v_hat = v + 0.1 * torch.randn_like(v)
    eps_hat = P.eps_from_v(x_t, v_hat, alpha, sigma)
    assert torch.allclose(eps_hat - eps, P.append_dims(alpha, v) * (v_hat - v), atol=1e-12)


def test_loss_weight_closed_forms():
    lam = torch.linspace(-19, 11, 301, dtype=torch.float64)
    snr = lam.exp()
    assert torch.equal(L.loss_weight("uniform", lam, target="v"), torch.ones_like(lam))
    assert torch.allclose(L.loss_weight("sigmoid", lam), torch.sigmoid(-1 - lam), rtol=1e-12)
    assert torch.allclose(L.loss_weight("sigmoid", lam, bias=2.0), torch.sigmoid(2 - lam), rtol=1e-12)
    wv = L.loss_weight("sigmoid", lam, target="v")
    assert torch.allclose(wv, torch.sigmoid(lam) * torch.sigmoid(-1 - lam), rtol=1e-12)
    # v-space weight peaks at lambda = -0.5 with value 0.1425 (diffmotion §4.1).
    fine = torch.linspace(-3, 2, 50001, dtype=torch.float64)
    wf = L.loss_weight("sigmoid", fine, target="v")
    assert abs(fine[wf.argmax()].item() + 0.5) < 1e-3 and abs(wf.max().item() - 0.1425) < 1e-4
    g = 5.0
    m = torch.minimum(snr, torch.full_like(snr, g))
    assert torch.allclose(L.loss_weight("min_snr", lam, target="eps", gamma=g), m / snr, rtol=1e-10)
    assert torch.allclose(L.loss_weight("min_snr", lam, target="v", gamma=g), m / (snr + 1), rtol=1e-10)
    assert torch.allclose(L.loss_weight("min_snr", lam, target="x0", gamma=g), m, rtol=1e-10)
    with pytest.raises(ValueError):
        L.loss_weight("edm", lam)


@pytest.mark.parametrize("kind", ["sigmoid", "min_snr"])
def test_weighting_is_target_independent(kind):
    # The same objective whichever target the network predicts (the weights carry the change of variables).
    x0, eps, x_t, alpha, sigma, lam = _state()
    v = P.v_from_eps_x0(eps, x0, alpha, sigma)
    v_hat = v + torch.randn_like(v)
    truth = {"eps": eps, "x0": x0, "v": v}
    vals = []
    for tgt in P.PREDICTIONS:
        pred = P.convert_prediction(x_t, v_hat, alpha, sigma, "v", tgt)
        vals.append(L.weighted_mse(pred, truth[tgt], L.loss_weight(kind, lam, target=tgt)).item())
    assert max(vals) - min(vals) < 1e-9 * max(vals)


def test_expected_loss_at_init_spec_values():
    for m2, ref in [(0.0, 0.0085), (0.5, 0.0217), (1.0, 0.0348), (1 / 3, 0.01727)]:
        assert abs(L.expected_loss_at_init(m2) - ref) <= 0.51 * 10 ** -(len(repr(ref).split(".")[1])), m2
    t = (torch.arange(100_000, dtype=torch.float64) + 0.5) / 100_000
    assert abs(torch.sigmoid(-1 - logsnr_cosine(t, shift=0.125)).mean().item() - 0.829) < 5e-4  # mean weight


def _diffmotion_loss(v_hat, x0, eps, lam):
    """Per-element diffmotion loss sigmoid(-1 - lambda) (eps_hat - eps)^2 with eps_hat from v_hat (§4.1)."""
    alpha, sigma = alpha_sigma(lam)
    z = P.append_dims(alpha, x0) * x0 + P.append_dims(sigma, x0) * eps
    eps_hat = P.eps_from_v(z, v_hat, alpha, sigma)
    return L.weighted_mse(eps_hat, eps, L.loss_weight("sigmoid", lam, bias=-1.0))


def test_loss_at_init_monte_carlo():
    g = torch.Generator().manual_seed(1)
    n = 200_000
    t = torch.rand(n, generator=g)
    lam = logsnr_cosine(t, shift=0.125)
    x0 = torch.rand(n, 4, generator=g) * 2 - 1  # U[-1, 1]: m2 = 1/3
    eps = torch.randn(n, 4, generator=g).clamp(-20, 20)
    mc = _diffmotion_loss(torch.zeros_like(x0), x0, eps, lam).item()
    ref = L.expected_loss_at_init(1 / 3)
    assert abs(mc / ref - 1) < 0.02, (mc, ref)


def test_oracle_training_loss_is_zero():
    g = torch.Generator().manual_seed(2)
    t = torch.rand(8, generator=g)
    lam = logsnr_cosine(t, shift=0.125).float()
    x0 = torch.rand(8, 3, 9, 16, 16, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, generator=g)
    alpha, sigma = alpha_sigma(lam)
    v_star = P.v_from_eps_x0(eps, x0, alpha, sigma)
    assert _diffmotion_loss(v_star, x0, eps, lam).item() <= 1e-10
