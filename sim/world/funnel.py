"""The purchase funnel as pure functions over arrays (one element per exposure or order).

Each function is one submodel of docs/ODD.md, section 7:

* :func:`purchase_probability` (7.3 Purchase): a logistic choice on expected fit, trust in the
  source, hype x impulsiveness, price paid and whether the consumer has an open need in the
  product's category.
* :func:`resolve_purchases` (7.3 Purchase): a day's purchases from every channel decided
  together, in a random order, against shared needs and budgets (:mod:`sim.world.demand`).
* :func:`realise_delivery` (7.4 Delivery): defect and realised fit from the order's own random
  numbers; :func:`expectation_gap`.
* :func:`return_probability` (7.5 Return): logistic in defect, misfit, gap and impulse, times the
  chance that after-sales service (:mod:`sim.world.service`) does *not* resolve a problem first.
* :func:`satisfaction` (7.6 Feedback): what one delivered order did to its buyer's satisfaction.

No function draws a random number: the random numbers come in as arguments.
"""

from __future__ import annotations

import numpy as np

from sim.world.params import DeliveryParams, PurchaseParams, ReturnParams


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
    need_open: np.ndarray | float,
) -> np.ndarray:
    """Chance an exposure turns into an order.

    ``logit P = intercept + fit*f + trust*t + hype*h*i - price*s*log(paid/median) + need*m``
    with f the expected fit in [0, 1], t trust in the source, h the source's hype, i the
    consumer's impulsiveness, s her price sensitivity and m = 1 when she has an open need in the
    product's category.

    >>> from sim.world.params import PurchaseParams
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
        + p.need * need_open
    )
    return sigmoid(eta)


def resolve_purchases(
    consumer: np.ndarray,
    category: np.ndarray,
    order_key: np.ndarray,
    sure: np.ndarray,
    need_open: np.ndarray,
    paid: np.ndarray,
    budget_left: np.ndarray,
) -> np.ndarray:
    """Which of a day's candidate purchases go through, taken in the order of ``order_key``.

    The candidates are the exposures whose uniform draw fell below the purchase probability
    with the need term (``u < P(need open)``). Taken one at a time in key order, as a consumer
    would meet them:

    * a candidate whose need was open at the start of the day buys if it is the first
      candidate of its (consumer, category): the need is still open when she meets it. A later
      one of the same (consumer, category) buys only if its draw is also below the purchase
      probability without the need (``sure``): the first purchase filled the need.
    * a candidate without an open need buys (its draw is below the probability without need).
    * a purchase that takes her past what is ``budget_left`` of her month ends her shopping
      for the day: it and her later candidates do not go through.

    This is exactly the sequential process, decided with array operations. The key is drawn
    per exposure from the channel's own stream, so the order is random and the same whichever
    channel the schedule processes first.

    Parameters
    ----------
    consumer, category : per candidate.
    order_key : per candidate, a uniform draw: the order in which she meets them.
    sure : per candidate, whether the draw is below the purchase probability without the need.
    need_open : per candidate, whether her need in the category was open at the start.
    paid : per candidate, the price.
    budget_left : per candidate, her remaining budget (the same for all of one consumer's).

    Returns
    -------
    Boolean mask over the candidates: bought.

    >>> one = np.ones(3)
    >>> resolve_purchases(np.zeros(3, int), np.zeros(3, int), np.array([.3, .1, .2]),
    ...     np.array([False, False, True]), np.ones(3, bool), one, 10 * one)
    array([False,  True,  True])
    """
    k = consumer.size
    bought = np.zeros(k, dtype=bool)
    if k == 0:
        return bought
    order = np.lexsort((order_key, category, consumer))
    c, g = consumer[order], category[order]
    first = np.r_[True, (c[1:] != c[:-1]) | (g[1:] != g[:-1])]
    ok = np.where(need_open[order], first | sure[order], True)
    # Budget: walk each consumer's purchases in key order.
    idx = order[ok]
    idx = idx[np.lexsort((order_key[idx], consumer[idx]))]
    c = consumer[idx]
    new = np.r_[True, c[1:] != c[:-1]]
    spend = np.cumsum(paid[idx])
    start = np.maximum.accumulate(np.where(new, np.arange(idx.size), 0))
    spend_so_far = spend - np.r_[0.0, spend][start]
    fits = spend_so_far <= budget_left[idx]
    # Once one purchase does not fit, none after it (of the same consumer) goes through.
    broke = np.cumsum(~fits)
    broke_before = broke - np.r_[0, broke][start]
    bought[idx[broke_before == 0]] = True
    return bought


def expected_fit(p: PurchaseParams, fit: np.ndarray, hype: np.ndarray | float) -> np.ndarray:
    """What the buyer expects at purchase: her fit, inflated by hype (Minnema et al. 2016),
    bounded like the realised fit it is compared with (at most 1)."""
    return np.minimum(fit + p.hype_expectation * hype, 1.0)


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
