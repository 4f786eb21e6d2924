"""Random draws shared by several populations."""

import numpy as np


def beta_with_mean(
    rng: np.random.Generator, mean: float, concentration: float, n: int
) -> np.ndarray:
    """``n`` Beta draws with the given mean and concentration (a + b).

    At a bound (mean 0 or 1) every value is the bound (the draws are still made). Callers give
    each attribute its own stream, since Beta sampling consumes a number of random numbers that
    depends on its parameters.

    >>> beta_with_mean(np.random.default_rng(0), 1.0, 4.0, 3).tolist()
    [1.0, 1.0, 1.0]
    """
    m = min(max(mean, 1e-6), 1 - 1e-6)
    draws = rng.beta(m * concentration, (1 - m) * concentration, n)
    return np.full(n, float(mean)) if mean <= 0.0 or mean >= 1.0 else draws
