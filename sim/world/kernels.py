"""Compiled loops for the hot path of a day: one pass over an exposure batch instead of a dozen.

A day at a million consumers shows about 1.2 million products; in numpy each exposure's
purchase draw (:func:`sim.world.purchases.offer`) walks the batch once per operation (gather
the fit, the trust, the open need, each term of the logit, the logistic, the comparison) and
holds a temporary array for each. :func:`purchase_draws` does the same arithmetic in one loop
with numba, element by element, so the batch is read once. The other loops do the same for the
day's passes over all consumers: members opening their owners' posts (:func:`posted_members`,
:func:`open_posts`) and the posts' exposures (:func:`expand_posts`), a searcher's open need
(:func:`pick_open_need`), recruitment and invitations (:func:`count_recruitment`,
:func:`recruitment_in_view`, :func:`member_invitations`) and the members of active owners
(:func:`active_members`). Each is the numpy it replaced, draw for draw (tests/test_kernels.py);
the random numbers still come from numpy's generators, drawn before the loop.

The arithmetic is :func:`sim.world.funnel.purchase_probability` to the bit: float32 where numpy
computes in float32 (a float32 attribute times a Python float), float64 from the hype term
on, and the per-product log price computed by numpy beforehand. The logistic's ``tanh`` may
differ from numpy's in the last bit; a draw flips only if it lands within that bit of the
probability (about one exposure in 10^16).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def purchase_draws(
    consumer: np.ndarray,
    product: np.ndarray,
    channel: np.ndarray,
    hype: np.ndarray,
    u: np.ndarray,
    product_category: np.ndarray,
    fit: np.ndarray,
    trust: np.ndarray,
    impulsiveness: np.ndarray,
    price_sensitivity: np.ndarray,
    log_price: np.ndarray,
    need_until: np.ndarray,
    day: int,
    coef: np.ndarray,
    reached: np.ndarray,
    month_reached: np.ndarray,
    fit_sum: np.ndarray,
    exposures: np.ndarray,
) -> np.ndarray:
    """Record a batch of exposures and draw their purchases with the need term.

    Parameters
    ----------
    consumer, product, u : per exposure (``u`` the uniform draw).
    channel, hype : per exposure, or one value (an array of length 1) for the whole batch.
    product_category : per product.
    fit : consumer x category (float32); trust, impulsiveness, price_sensitivity : per
        consumer (float32; trust in the batch's source).
    log_price : channel x product, ``log(paid / median price)``.
    need_until : consumer x category, the last day of each open need.
    coef : ``intercept, fit, trust, hype, price, need`` (:class:`~sim.world.params.PurchaseParams`).

    Changes ``reached`` and ``month_reached`` (channel x consumer) to True for every exposure,
    and adds each channel's fit (in exposure order, as ``np.bincount`` does) and exposures to
    ``fit_sum`` and ``exposures``.

    Returns
    -------
    The positions whose draw fell below the purchase probability with the need term (the
    candidates of :func:`sim.world.purchases.offer`), in increasing order.
    """
    n = consumer.size
    one_channel = channel.size == 1
    one_hype = hype.size == 1
    c_int = np.float32(coef[0])
    c_fit = np.float32(coef[1])
    c_trust = np.float32(coef[2])
    c_hype, c_price, c_need = coef[3], np.float32(coef[4]), coef[5]
    out = np.empty(n, dtype=np.int64)
    k = 0
    for i in range(n):
        c = consumer[i]
        ch = channel[0] if one_channel else channel[i]
        cat = product_category[product[i]]
        f = fit[c, cat]
        reached[ch, c] = True
        month_reached[ch, c] = True
        fit_sum[ch] += np.float64(f)
        exposures[ch] += 1.0
        # purchase_probability's terms in numpy's order and precision
        e32 = c_int + c_fit * f
        e32 = e32 + c_trust * trust[c]
        h = hype[0] if one_hype else hype[i]
        eta = np.float64(e32) + (c_hype * h) * np.float64(impulsiveness[c])
        eta = eta - np.float64(c_price * price_sensitivity[c]) * log_price[ch, product[i]]
        if need_until[c, cat] >= day:
            eta = eta + c_need
        else:
            eta = eta + 0.0
        # The logistic is below 1 / (1 - eta + eta^2 / 2) for eta < 0 (as exp(eta) is): a
        # draw above that bound is no candidate, and most draws are, so few need the tanh.
        if eta < 0.0 and u[i] >= 1.0 / (1.0 - eta + 0.5 * eta * eta):
            continue
        if u[i] < 0.5 * (1.0 + math.tanh(0.5 * eta)):
            out[k] = i
            k += 1
    return out[:k]


@njit(cache=True, nogil=True)
def posted_members(group: np.ndarray, group_owner: np.ndarray, posted: np.ndarray) -> int:
    """How many consumers are members of a group whose owner posted today (``posted`` per
    owner): the number of open draws :func:`open_posts` needs."""
    count = 0
    for i in range(group.size):
        g = group[i]
        if g >= 0 and posted[group_owner[g]]:
            count += 1
    return count


@njit(cache=True, nogil=True)
def open_posts(
    group: np.ndarray,
    group_owner: np.ndarray,
    posted: np.ndarray,
    logit_base: np.ndarray,
    trust: np.ndarray,
    initial_trust: np.float32,
    engagement_trust: np.float32,
    u: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Which members of posting owners open today's posts, in consumer order.

    The ``j``-th member of a posting owner (consumers in increasing order) opens when
    ``u[j]`` is below :meth:`sim.world.consumers.Consumers.engagement`'s chance: the logistic
    of her owner's ``logit_base`` plus ``engagement_trust * (trust - initial_trust)``, the
    shift in float32 as numpy computes it. Returns the openers and their owners.
    """
    openers = np.empty(u.size, dtype=np.int64)
    owner = np.empty(u.size, dtype=np.int32)
    j = 0
    k = 0
    for i in range(group.size):
        g = group[i]
        if g < 0:
            continue
        o = group_owner[g]
        if not posted[o]:
            continue
        shift = engagement_trust * (trust[i] - initial_trust)
        x = logit_base[o] + np.float64(shift)
        if u[j] < 0.5 * (1.0 + math.tanh(0.5 * x)):
            openers[k] = i
            owner[k] = o
            k += 1
        j += 1
    return openers[:k], owner[:k]


@njit(cache=True, nogil=True)
def expand_posts(
    openers: np.ndarray,
    owner: np.ndarray,
    start: np.ndarray,
    count: np.ndarray,
    products: np.ndarray,
    material_until: np.ndarray,
    day: int,
    hype_material: float,
    hype_post: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One exposure per opener and product her owner posted today (``products[start[o] :
    start[o] + count[o]]``; an unstocked pick, -1, is skipped), with the hype of the owner's
    2b material while it lasts. Returns consumer, product, owner and hype per exposure."""
    total = 0
    for i in range(openers.size):
        total += count[owner[i]]
    consumer = np.empty(total, dtype=openers.dtype)
    product = np.empty(total, dtype=products.dtype)
    whose = np.empty(total, dtype=owner.dtype)
    hype = np.empty(total, dtype=np.float64)
    k = 0
    for i in range(openers.size):
        o = owner[i]
        h = hype_material if material_until[o] >= day else hype_post
        for j in range(start[o], start[o] + count[o]):
            if products[j] >= 0:
                consumer[k] = openers[i]
                product[k] = products[j]
                whose[k] = o
                hype[k] = h
                k += 1
    return consumer[:k], product[:k], whose[:k], hype[:k]


@njit(cache=True, nogil=True)
def pick_open_need(
    need_until: np.ndarray, who: np.ndarray, day: int, score: np.ndarray
) -> np.ndarray:
    """One of each consumer's open needs: the open category with the highest ``score`` (a
    row of uniforms per consumer; the first on a tie, as ``argmax``), -1 for one with none."""
    out = np.empty(who.size, dtype=np.int64)
    for r in range(who.size):
        best, pick = np.float32(-1.0), -1
        row = need_until[who[r]]
        for c in range(row.size):
            if row[c] >= day and score[r, c] > best:
                best, pick = score[r, c], c
        out[r] = pick
    return out


@njit(cache=True, nogil=True)
def count_recruitment(
    group: np.ndarray,
    group_owner: np.ndarray,
    active: np.ndarray,
    trust: np.ndarray,
    recruit_trust: np.float32,
) -> tuple[int, int]:
    """The sizes of :func:`sim.world.growth.grow_network`'s first draws: members trusting
    their owner enough to be recruited (the pool), and members of active owners."""
    pool, live = 0, 0
    for i in range(group.size):
        g = group[i]
        if g < 0:
            continue
        if active[group_owner[g]]:
            live += 1
        if trust[i] >= recruit_trust:
            pool += 1
    return pool, live


@njit(cache=True, nogil=True)
def recruitment_in_view(
    group: np.ndarray,
    group_owner: np.ndarray,
    active: np.ndarray,
    trust: np.ndarray,
    recruit_trust: np.float32,
    m: int,
    key: np.ndarray,
) -> np.ndarray:
    """Per unit (an active owner, or a group of an owner who quit, coded ``m + group``; in
    increasing order) its pool member with the lowest ``key`` (the ``j``-th pool member, in
    consumer order, has ``key[j]``; the first on a tie): each unit's one satisfied member in
    view (:func:`sim.world.growth.grow_network`)."""
    lowest = np.full(m + group_owner.size, np.inf)
    pick = np.full(m + group_owner.size, -1, dtype=np.int64)
    j = 0
    for i in range(group.size):
        g = group[i]
        if g < 0 or not trust[i] >= recruit_trust:
            continue
        o = group_owner[g]
        u = o if active[o] else m + g
        if key[j] < lowest[u]:
            lowest[u] = key[j]
            pick[u] = i
        j += 1
    return pick[pick >= 0]


@njit(cache=True, nogil=True)
def member_invitations(
    group: np.ndarray,
    group_owner: np.ndarray,
    active: np.ndarray,
    trust: np.ndarray,
    invite_rate: np.float32,
    u: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Members of active owners who invite a friend today: the ``j``-th such member (in
    consumer order) invites when ``u[j] < invite_rate * trust`` (float32, as numpy computes
    it). Returns the inviters and their groups."""
    who = np.empty(u.size, dtype=np.int64)
    where = np.empty(u.size, dtype=group.dtype)
    j, k = 0, 0
    for i in range(group.size):
        g = group[i]
        if g < 0 or not active[group_owner[g]]:
            continue
        if u[j] < invite_rate * trust[i]:
            who[k] = i
            where[k] = g
            k += 1
        j += 1
    return who[:k], where[:k]


@njit(cache=True, nogil=True)
def active_members(group: np.ndarray, group_owner: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Per consumer: is she a member of an active owner's group?"""
    out = np.zeros(group.size, dtype=np.bool_)
    for i in range(group.size):
        g = group[i]
        if g >= 0 and active[group_owner[g]]:
            out[i] = True
    return out
