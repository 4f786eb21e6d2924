"""The purchase funnel as pure functions over arrays (one element per exposure or order).

Each function is one submodel of docs/ODD.md, section 7:

* :func:`purchase_probability` (7.3 Purchase): a logistic choice on expected fit, trust in the
  source, hype x impulsiveness, price paid and whether the consumer is in the market.
* :func:`realise_delivery` (7.4 Delivery): defect and realised fit from the order's own random
  numbers; :func:`expectation_gap`.
* :func:`return_probability` (7.5 Return): logistic in defect, misfit, gap and impulse, times the
  chance that after-sales service does *not* resolve a problem first.
* :func:`satisfaction` (7.6 Feedback): what one delivered order did to its buyer's satisfaction.

No function draws a random number: the random numbers come in as arguments.
"""

from __future__ import annotations

import numpy as np

from sim.params import DeliveryParams, PurchaseParams, ReturnParams


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, numerically safe for large |x|."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def purchase_probability(
    p: PurchaseParams,
    fit: np.ndarray,
    trust: np.ndarray,
    hype: np.ndarray | float,
    impulsiveness: np.ndarray,
    paid_over_median: np.ndarray,
    price_sensitivity: np.ndarray,
    in_market: np.ndarray,
) -> np.ndarray:
    """Chance an exposure turns into an order.

    ``logit P = intercept + fit*f + trust*t + hype*h*i - price*s*log(paid/median) + need*m``
    with f the expected fit in [0, 1], t trust in the source, h the source's hype, i the
    consumer's impulsiveness, s her price sensitivity and m = 1 when she is in the market today.

    >>> from sim.params import PurchaseParams
    >>> one = np.ones(1)
    >>> float(purchase_probability(PurchaseParams(intercept=0, fit=0, trust=0, hype=0, price=0,
    ...     need=0), one, one, 0.0, one, one, one, one)[0])
    0.5
    """
    eta = (
        p.intercept
        + p.fit * fit
        + p.trust * trust
        + p.hype * hype * impulsiveness
        - p.price * price_sensitivity * np.log(paid_over_median)
        + p.need * in_market
    )
    return sigmoid(eta)


def expected_fit(p: PurchaseParams, fit: np.ndarray, hype: np.ndarray | float) -> np.ndarray:
    """What the buyer expects at purchase: her fit, inflated by hype (Minnema et al. 2016)."""
    return fit + p.hype_expectation * hype


def realise_delivery(
    p: DeliveryParams,
    quality: np.ndarray,
    fit: np.ndarray,
    fit_noise_scale: np.ndarray,
    u_defect: np.ndarray,
    z_fit: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Whether each delivered item is defective and how well it really fits.

    ``u_defect`` (uniform) and ``z_fit`` (standard normal) are the order's own random numbers,
    drawn when it was placed, so an order's fate does not depend on what else was delivered
    that day. ``fit_noise_scale`` multiplies ``fit_noise``: above 1 for apparel-like categories,
    below 1 where a skilled owner's advice removed part of the surprise.
    Returns (defect: bool array, realised fit clipped to [0, 1]).
    """
    defect = u_defect >= quality
    realised = np.clip(fit + z_fit * p.fit_noise * fit_noise_scale, 0.0, 1.0)
    return defect, realised


def expectation_gap(
    expected: np.ndarray, realised_fit: np.ndarray, defect: np.ndarray
) -> np.ndarray:
    """How far reality fell short: ``max(0, expected - realised value)``; a defect is worth 0."""
    value = np.where(defect, 0.0, realised_fit)
    return np.maximum(0.0, expected - value)


def return_propensity(
    p: ReturnParams,
    defect: np.ndarray,
    misfit: np.ndarray,
    gap: np.ndarray,
    impulse: np.ndarray,
) -> np.ndarray:
    """Chance a delivered order is returned if after-sales service does not step in:
    ``sigmoid(intercept + defect*d + misfit*m + gap*g + impulse*h*i)``."""
    eta = p.intercept + p.defect * defect + p.misfit * misfit + p.gap * gap + p.impulse * impulse
    return sigmoid(eta)


def return_probability(
    p: ReturnParams,
    defect: np.ndarray,
    misfit: np.ndarray,
    gap: np.ndarray,
    impulse: np.ndarray,
    resolution: np.ndarray | float,
) -> np.ndarray:
    """Chance a delivered order is returned: ``propensity * (1 - resolution * problem)``.

    A problem (defect or misfit) is resolved by after-sales service with chance ``resolution``
    (an exchange, advice), and a resolved problem is not returned. The model draws the two
    steps separately (it needs to know which orders were resolved); this is their product.
    """
    problem = defect | misfit
    return return_propensity(p, defect, misfit, gap, impulse) * (1.0 - resolution * problem)


def satisfaction(
    returned: np.ndarray,
    resolved: np.ndarray,
    problem: np.ndarray,
    gap: np.ndarray,
    resolved_level: float,
) -> np.ndarray:
    """Satisfaction in [0, 1] with one delivered order.

    Returned: 0. Problem resolved by service: ``resolved_level``. Kept: ``1 - gap``, less 0.5
    more when she kept an unresolved problem (clipped to [0, 1]).
    """
    kept = np.clip(1.0 - gap - 0.5 * problem, 0.0, 1.0)
    s = np.where(resolved, resolved_level, kept)
    return np.where(returned, 0.0, s)
