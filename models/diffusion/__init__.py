"""Network-independent diffusion core: schedules, parameterizations, loss weightings and DDIM sampling."""
from .losses import WEIGHTINGS, expected_loss_at_init, loss_weight, weighted_mse
from .parameterization import (
    PREDICTIONS, append_dims, convert_prediction, q_sample, eps_from_v, eps_from_x0, make_target, predict_x0_eps,
    v_from_eps, v_from_eps_x0, v_from_x0, x0_from_eps, x0_from_v,
)
from .samplers import ddim_sample, ddim_step, sample_noise_levels
from .schedules import (
    abar_sequence, alpha_bar_to_betas, alpha_bar_to_logsnr, alpha_sigma, betas_to_alpha_bar, cosine_alpha_bar,
    cosine_betas, ddim_timesteps_floor, ddim_timesteps_round, discrete_logsnr_table, linear_alpha_bar,
    logsnr_cosine, logsnr_cosine_interpolated, logsnr_cosine_inverse, logsnr_to_alpha_bar, logsnr_to_sigma,
    sigma_to_logsnr,
)

__all__ = [
    # schedules
    "cosine_alpha_bar", "cosine_betas", "linear_alpha_bar", "betas_to_alpha_bar", "alpha_bar_to_betas",
    "logsnr_cosine", "logsnr_cosine_inverse", "logsnr_cosine_interpolated", "alpha_sigma", "alpha_bar_to_logsnr",
    "logsnr_to_alpha_bar", "sigma_to_logsnr", "logsnr_to_sigma", "discrete_logsnr_table", "ddim_timesteps_round",
    "ddim_timesteps_floor", "abar_sequence",
    # parameterization
    "PREDICTIONS", "append_dims", "x0_from_eps", "eps_from_x0", "x0_from_v", "eps_from_v", "v_from_eps_x0",
    "v_from_x0", "v_from_eps", "predict_x0_eps", "convert_prediction", "make_target", "q_sample",
    # losses
    "WEIGHTINGS", "loss_weight", "weighted_mse", "expected_loss_at_init",
    # samplers
    "ddim_step", "ddim_sample", "sample_noise_levels",
]
