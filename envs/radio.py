"""Wireless uplink model shared by the device scenarios: path loss, Rayleigh fading, Shannon rate."""
from __future__ import annotations

import numpy as np


def path_loss_db(distance_km: np.ndarray) -> np.ndarray:
    """3GPP-style macro path loss 128.1 + 37.6 log10(d / km)."""
    return 128.1 + 37.6 * np.log10(distance_km)


def noise_w(noise_dbm_per_hz: float, bandwidth_hz: np.ndarray | float) -> np.ndarray:
    return 10.0 ** ((noise_dbm_per_hz - 30.0) / 10.0) * bandwidth_hz


def rayleigh_init(rng: np.random.Generator, shape) -> np.ndarray:
    """Complex Gaussian fading coefficients with E|g|^2 = 1."""
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2.0)


def rayleigh_evolve(rng: np.random.Generator, g: np.ndarray, correlation: float) -> np.ndarray:
    """First-order Gauss-Markov step: g' = rho g + sqrt(1 - rho^2) w keeps E|g|^2 = 1."""
    return correlation * g + np.sqrt(1.0 - correlation ** 2) * rayleigh_init(rng, g.shape)


def shannon_rate_mbit(bandwidth_hz: np.ndarray | float, power_w: float, loss_db: np.ndarray,
                      fading: np.ndarray, noise_dbm_per_hz: float) -> np.ndarray:
    """Achievable rate W log2(1 + P |g|^2 10^(-PL/10) / (N0 W)), in Mbit/s."""
    gain = np.abs(fading) ** 2 * 10.0 ** (-loss_db / 10.0)
    snr = power_w * gain / noise_w(noise_dbm_per_hz, bandwidth_hz)
    return bandwidth_hz * np.log2(1.0 + snr) / 1e6
