"""Compiled loops for the hot path of a day: one pass over an exposure batch instead of a dozen.

A day at a million consumers shows about 1.2 million products; in numpy each exposure's
purchase draw (:func:`sim.world.purchases.offer`) walks the batch once per operation (gather
the fit, the trust, the open need, each term of the logit, the logistic, the comparison) and
holds a temporary array for each. :func:`purchase_draws` does the same arithmetic in one loop
with numba, element by element, so the batch is read once. The other loops do the same for the
day's passes over all consumers: members opening their owners' posts (:func:`posted_members`,
:func:`open_posts`) and their purchases (:func:`post_purchase_draws`), who searches and who
gets a need (:func:`below_with_need`, :func:`below`), new needs and their categories
(:func:`open_needs`, :func:`draw_from_cdf`), a searcher's open need (:func:`pick_open_need`),
followers watching (:func:`engaged`), recruitment, invitations and leaving
(:func:`count_recruitment`, :func:`recruitment_in_view`, :func:`member_invitations`,
:func:`reset_in_groups`, :func:`leaving_members`), the trust of members of active owners and
of followers (:func:`active_member_values`, :func:`compress`) and hearing members out
(:func:`add_rows_of`). Each is the numpy it replaced, draw for draw (tests/test_kernels.py);
the random numbers still come from numpy's generators, drawn before the loop.

Three habits make them fast. A logistic draw computes the ``tanh`` only for the few draws
close to the chance (:func:`below_logistic`). Where half the outcomes are random (who is a
member, who opens), a loop writes every element and advances its output by the outcome
instead of branching on it: a branch the CPU cannot guess costs more than the write. And a
loop over consumers scattered in memory starts loading the attributes of the one ``AHEAD``
steps on (:func:`prefetch`), so the waits for memory overlap instead of adding up.

The arithmetic is :func:`sim.world.funnel.purchase_probability` to the bit: float32 where numpy
computes in float32 (a float32 attribute times a Python float), float64 from the hype term
on, and the per-product log price computed by numpy beforehand. The logistic's ``tanh`` may
differ from numpy's in the last bit; a draw flips only if it lands within that bit of the
probability (about one exposure in 10^16).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefetch_codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
    """LLVM's ``prefetch`` (read, keep in all cache levels) of the element at the indices."""
    arrty = signature.args[0]
    ary = context.make_array(arrty)(context, builder, args[0])
    types_ = signature.args[1:]
    index = [context.cast(builder, a, t, types.intp) for a, t in zip(args[1:], types_, strict=True)]
    pointer = cgutils.get_item_pointer(context, builder, arrty, ary, index, wraparound=False)
    byte = ir.IntType(8).as_pointer()
    i32 = ir.IntType(32)
    fn = cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(ir.VoidType(), [byte, i32, i32, i32]), "llvm.prefetch.p0"
    )
    read, keep, data = ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)
    builder.call(fn, [builder.bitcast(pointer, byte), read, keep, data])
    return context.get_dummy_value()


def _prefetch(typingctx, array, i):  # type: ignore[no-untyped-def]
    """Ask the CPU to start loading ``array[i]`` now (a hint: it changes no value and never
    faults). A loop over consumers in a scattered order waits on memory for each one's
    attributes; fetching those of the consumer a few steps ahead overlaps the waits."""
    return types.void(array, i), _prefetch_codegen


def _prefetch2(typingctx, array, i, j):  # type: ignore[no-untyped-def]
    """:func:`prefetch` of ``array[i, j]``."""
    return types.void(array, i, j), _prefetch_codegen


# Compiled-code intrinsics (typed Any: their Python signatures are numba's typing hooks).
prefetch: Any = intrinsic(_prefetch)
prefetch2: Any = intrinsic(_prefetch2)


AHEAD = 16  # exposures ahead to prefetch: 16 and 32 both about halve the draws' time


@njit(cache=True, nogil=True)
def below_logistic(u: float, x: float) -> bool:
    """``u < 1 / (1 + exp(-x))``, decided as ``u < (1 + tanh(x / 2)) / 2`` (numpy's
    :func:`sim.world.funnel.sigmoid`), but computing the ``tanh`` only for draws close to it.

    Near 0 (``|x| <= 1``) the logistic's Taylor series ``1/2 + x/4 - x^3/48 + x^5/480 - ...``
    alternates with shrinking terms, so it lies within ``|x|^5 / 480`` of ``1/2 + x/4 -
    x^3/48``. Further out, with ``a = |x|``, Taylor polynomials bound the exponential:
    ``e^a >= P = 1 + a + ... + a^4/24`` and ``e^-a >= T = 1 - a + ... - a^5/120`` (every
    dropped remainder is positive), so the logistic of ``-a``, ``1 / (1 + e^a)``, lies in
    ``[T / (1 + T), 1 / (1 + P)]`` (the lower end where ``T > 0``) and that of ``a`` in
    ``[P / (1 + P), 1 / (1 + T)]``. Every band is widened by 1e-12, far beyond the last bit
    of the ``tanh``, so a draw outside it gets the exact test's answer; few draws fall inside
    (about one in a hundred at ``|x|`` near 1, fewer elsewhere) and compute the ``tanh``.
    """
    a = abs(x)
    if a <= 1.0:
        centre = 0.5 + 0.25 * x - x * x * x / 48.0
        off = u - centre
        if abs(off) > a * a * a * a * a / 480.0 + 1e-12:  # (nearly always: no branch to guess)
            return off < 0.0
        return u < 0.5 * (1.0 + math.tanh(0.5 * x))
    else:
        a2 = a * a
        big = 1.0 + a + 0.5 * a2 + a2 * a / 6.0 + a2 * a2 / 24.0  # P <= e^a
        small = 1.0 - a + 0.5 * a2 - a2 * a / 6.0 + a2 * a2 / 24.0 - a2 * a2 * a / 120.0
        if x < 0.0:
            upper = (1.0 + 1e-12) / (1.0 + big)
            if u >= upper:  # (most purchase draws: a small chance, one division)
                return False
            lower = (1.0 - 1e-12) * small / (1.0 + small) if small > 0.0 else 0.0
        else:
            lower = (1.0 - 1e-12) * big / (1.0 + big)
            upper = (1.0 + 1e-12) / (1.0 + small) if small > 0.0 else 1.0
    if u >= upper:
        return False
    if u < lower:
        return True
    return u < 0.5 * (1.0 + math.tanh(0.5 * x))


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
    fits: np.ndarray,
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
    ``fit_sum`` and ``exposures``; or, with a non-empty ``fits`` (float32, one per exposure),
    stores each exposure's fit there instead of adding it, for :func:`add_fits` to add in order
    after the batch before it (:mod:`sim.world.pieces`).

    Returns
    -------
    The positions whose draw fell below the purchase probability with the need term (the
    candidates of :func:`sim.world.purchases.offer`), in increasing order.
    """
    n = consumer.size
    one_channel = channel.size == 1
    one_hype = hype.size == 1
    keep_fits = fits.size > 0
    out = np.empty(n, dtype=np.int64)
    terms = _terms(coef)
    k = 0
    last = n - 1
    for i in range(n):
        # The attributes of the consumer AHEAD exposures on, loaded while this one is drawn.
        ahead = min(i + AHEAD, last)
        _prefetch_consumer(
            consumer[ahead],
            product_category[product[ahead]],
            fit,
            need_until,
            trust,
            impulsiveness,
            price_sensitivity,
        )
        ch = channel[0] if one_channel else channel[i]
        h = hype[0] if one_hype else hype[i]
        hit, f = _exposure(
            consumer[i],
            product[i],
            ch,
            h,
            u[i],
            product_category,
            fit,
            trust,
            impulsiveness,
            price_sensitivity,
            log_price,
            need_until,
            day,
            terms,
            reached,
            month_reached,
        )
        if keep_fits:
            fits[i] = f
        else:
            fit_sum[ch] += np.float64(f)
        exposures[ch] += 1.0
        if hit:
            out[k] = i
            k += 1
    return out[:k]


@njit(cache=True, nogil=True)
def add_fits(fits: np.ndarray, channel: np.ndarray, fit_sum: np.ndarray) -> None:
    """Add stored fits (:func:`purchase_draws`' ``fits``) to their channel's total in
    ``fit_sum``, in order, as the draws would have; ``channel`` per fit or one for all."""
    one_channel = channel.size == 1
    for i in range(fits.size):
        ch = channel[0] if one_channel else channel[i]
        fit_sum[ch] += np.float64(fits[i])


@njit(cache=True, nogil=True)
def _prefetch_consumer(
    c: int,
    cat: int,
    fit: np.ndarray,
    need_until: np.ndarray,
    trust: np.ndarray,
    impulsiveness: np.ndarray,
    price_sensitivity: np.ndarray,
) -> None:
    """Start loading what an exposure of consumer ``c`` to category ``cat`` reads."""
    prefetch2(fit, c, cat)
    prefetch2(need_until, c, cat)
    prefetch(trust, c)
    prefetch(impulsiveness, c)
    prefetch(price_sensitivity, c)


@njit(cache=True, nogil=True)
def _terms(coef: np.ndarray) -> tuple:
    """``coef`` (:class:`~sim.world.params.PurchaseParams`' order) in the precision each term
    uses (float32 where numpy meets a float32 attribute), once per batch."""
    return (
        np.float32(coef[0]),
        np.float32(coef[1]),
        np.float32(coef[2]),
        coef[3],
        np.float32(coef[4]),
        coef[5],
    )


@njit(cache=True, nogil=True)
def _exposure(
    c: int,
    item: int,
    ch: int,
    h: float,
    u: float,
    product_category: np.ndarray,
    fit: np.ndarray,
    trust: np.ndarray,
    impulsiveness: np.ndarray,
    price_sensitivity: np.ndarray,
    log_price: np.ndarray,
    need_until: np.ndarray,
    day: int,
    k: tuple,
    reached: np.ndarray,
    month_reached: np.ndarray,
) -> tuple[bool, float]:
    """One exposure (consumer ``c``, product ``item``, channel ``ch``, hype ``h``, draw
    ``u``; coefficients ``k`` from :func:`_terms`): mark her reached, and is the draw
    below the purchase chance? Returns that and the fit (float32), which the caller totals."""
    cat = product_category[item]
    f = fit[c, cat]
    reached[ch, c] = True
    month_reached[ch, c] = True
    # purchase_probability's terms in numpy's order and precision
    e32 = k[0] + k[1] * f
    e32 = e32 + k[2] * trust[c]
    eta = np.float64(e32) + (k[3] * h) * np.float64(impulsiveness[c])
    eta = eta - np.float64(k[4] * price_sensitivity[c]) * log_price[ch, item]
    if need_until[c, cat] >= day:
        eta = eta + k[5]
    else:
        eta = eta + 0.0
    return below_logistic(u, eta), f


@njit(cache=True, nogil=True)
def post_purchase_draws(
    openers: np.ndarray,
    owner: np.ndarray,
    start: np.ndarray,
    count: np.ndarray,
    products: np.ndarray,
    owner_hype: np.ndarray,
    channel: int,
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
    fits: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`purchase_draws` over the owners' posts without making their exposures: each
    opener, in order, sees every stocked product her owner ``o`` posted, in order
    (``products[start[o] : start[o] + count[o]]``; an unstocked pick, -1, is skipped), with
    her owner's ``owner_hype[o]``; ``u[j]`` is the draw of the j-th such exposure (and
    ``fits[j]``, if not empty, where its fit goes instead of ``fit_sum``). Returns, per
    candidate, its exposure's position, consumer, product, owner and hype."""
    position = np.empty(u.size, dtype=np.int64)
    who = np.empty(u.size, dtype=openers.dtype)
    item = np.empty(u.size, dtype=products.dtype)
    whose = np.empty(u.size, dtype=owner.dtype)
    hype = np.empty(u.size, dtype=np.float64)
    terms = _terms(coef)
    total, count_ = fit_sum[channel], exposures[channel]  # (one channel: totals in registers)
    keep_fits = fits.size > 0
    j, k = 0, 0
    last = openers.size - 1
    for i in range(openers.size):
        ahead = min(i + 2, last)  # (about AHEAD exposures on: an opener sees a few products)
        o_ahead = owner[ahead]
        if count[o_ahead] > 0:
            cat_ahead = product_category[max(products[start[o_ahead]], 0)]
            _prefetch_consumer(
                openers[ahead], cat_ahead, fit, need_until, trust, impulsiveness, price_sensitivity
            )
        c, o = openers[i], owner[i]
        h = owner_hype[o]
        for slot in range(start[o], start[o] + count[o]):
            p = products[slot]
            if p < 0:
                continue
            hit, f = _exposure(
                c,
                p,
                channel,
                h,
                u[j],
                product_category,
                fit,
                trust,
                impulsiveness,
                price_sensitivity,
                log_price,
                need_until,
                day,
                terms,
                reached,
                month_reached,
            )
            if keep_fits:
                fits[j] = f
            else:
                total += np.float64(f)
            count_ += 1.0
            if hit:
                position[k], who[k], item[k], whose[k], hype[k] = j, c, p, o, h
                k += 1
            j += 1
    fit_sum[channel], exposures[channel] = total, count_
    return position[:k], who[:k], item[:k], whose[:k], hype[:k]


@njit(cache=True, nogil=True)
def posted_members(group: np.ndarray, group_owner: np.ndarray, posted: np.ndarray) -> int:
    """How many consumers are members of a group whose owner posted today (``posted`` per
    owner): the number of open draws :func:`open_posts` needs."""
    count = 0
    if group_owner.size == 0:
        return count
    for i in range(group.size):
        g = group[i]  # (no branch: see count_recruitment)
        count += (g >= 0) & posted[group_owner[g]]
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
        # Write, then keep the entry only if she opens: half of them do, at random, and a
        # branch on it would be mispredicted half the time (k <= j, so the write fits).
        openers[k] = i
        owner[k] = o
        k += _engages(u[j], logit_base[o], trust[i], initial_trust, engagement_trust)
        j += 1
    return openers[:k], owner[:k]


@njit(cache=True, nogil=True)
def pick_open_need(
    need_until: np.ndarray, who: np.ndarray, day: int, score: np.ndarray
) -> np.ndarray:
    """One of each consumer's open needs: the open category with the highest ``score`` (a
    row of uniforms per consumer; the first on a tie, as ``argmax``), -1 for one with none."""
    out = np.empty(who.size, dtype=np.int64)
    last = who.size - 1
    for r in range(who.size):
        prefetch2(need_until, who[min(r + AHEAD, last)], 0)  # (a row: one or two lines)
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
    if group_owner.size == 0:  # (no group: nothing to read for a non-member's -1 below)
        return pool, live
    for i in range(group.size):
        # Without branches: who is a member follows no pattern a CPU could guess (a
        # non-member's group, -1, reads the last owner and counts nothing).
        g = group[i]
        member = g >= 0
        live += member & active[group_owner[g]]
        pool += member & (trust[i] >= recruit_trust)
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
    if key.size == 0:
        return pick[:0]
    last = key.size - 1
    j = 0
    for i in range(group.size):
        # Who is in the pool follows no pattern a CPU could guess, so it is not branched on
        # (see count_recruitment): a consumer outside it reads a unit and a key but keeps
        # neither; only the rare new lowest key is a branch.
        g = group[i]
        o = group_owner[g]
        u = o if active[o] else m + g
        in_pool = (g >= 0) & (trust[i] >= recruit_trust)
        k = key[min(j, last)]
        if in_pool & (k < lowest[u]):
            lowest[u] = k
            pick[u] = i
        j += in_pool
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
    who = np.empty(u.size + 1, dtype=np.int64)
    where = np.empty(u.size + 1, dtype=group.dtype)
    if u.size == 0:  # (no member of an active owner: nothing to read a draw from)
        return who[:0], where[:0]
    last = u.size - 1
    j, k = 0, 0
    for i in range(group.size):
        # No branches (see count_recruitment): j counts members of active owners, k inviters;
        # k <= j <= u.size, so the writes fit, and a non-member reads a draw but moves nothing.
        g = group[i]
        live = (g >= 0) & active[group_owner[g]]
        who[k] = i
        where[k] = g
        k += live & (u[min(j, last)] < invite_rate * trust[i])
        j += live
    return who[:k], where[:k]


@njit(cache=True, nogil=True)
def active_member_values(
    group: np.ndarray, group_owner: np.ndarray, active: np.ndarray, value: np.ndarray
) -> np.ndarray:
    """``value`` of each member of an active owner's group, in consumer order: the values
    a mask of the members of active owners would pick, in one pass."""
    out = np.empty(group.size, dtype=value.dtype)
    k = 0
    if group_owner.size == 0:
        return out[:0]
    for i in range(group.size):
        g = group[i]  # (no branches, as in count_recruitment; k <= i, so the write fits)
        out[k] = value[i]
        k += (g >= 0) & active[group_owner[g]]
    return out[:k]


@njit(cache=True, nogil=True)
def leaving_members(
    group: np.ndarray, trust: np.ndarray, threshold: np.float32, rate: float, u: np.ndarray
) -> np.ndarray:
    """Members who leave their group today: the ``j``-th member (in consumer order) leaves
    when her ``trust`` is below ``threshold`` (float32, as numpy compares) and ``u[j] <
    rate`` (:func:`sim.world.growth.churn_and_unfollow`)."""
    out = np.empty(u.size + 1, dtype=np.int64)
    if u.size == 0:
        return out[:0]
    last = u.size - 1
    j, k = 0, 0
    for i in range(group.size):
        member = group[i] >= 0  # (no branches: see member_invitations)
        out[k] = i
        k += member & (trust[i] < threshold) & (u[min(j, last)] < rate)
        j += member
    return out[:k]


@njit(cache=True, nogil=True)
def engaged(
    who: np.ndarray,
    trust: np.ndarray,
    initial_trust: np.float32,
    engagement_trust: np.float32,
    logit_base: float,
    u: np.ndarray,
) -> np.ndarray:
    """Those of ``who`` who engage today: the ``r``-th when ``u[r]`` is below
    :meth:`sim.world.consumers.Consumers.engagement`'s chance, the logistic of ``logit_base``
    plus ``engagement_trust * (trust - initial_trust)`` (the shift in float32, as numpy
    computes it); loading ahead, no branch on the outcome."""
    out = np.empty(who.size, dtype=np.int64)
    k = 0
    last = who.size - 1
    for r in range(who.size):
        prefetch(trust, who[min(r + AHEAD, last)])
        i = who[r]
        out[k] = i
        k += _engages(u[r], logit_base, trust[i], initial_trust, engagement_trust)
    return out[:k]


@njit(cache=True, nogil=True)
def _engages(
    u: float,
    logit_base: float,
    trust: np.float32,
    initial_trust: np.float32,
    engagement_trust: np.float32,
) -> bool:
    """:meth:`sim.world.consumers.Consumers.engagement`'s rule for one consumer and draw: is
    ``u`` below the logistic of ``logit_base + engagement_trust * (trust - initial_trust)``
    (the shift in float32, as numpy computes it)?"""
    shift = engagement_trust * (trust - initial_trust)
    return below_logistic(u, logit_base + np.float64(shift))


@njit(cache=True, nogil=True)
def below(u: np.ndarray, chance: np.ndarray) -> np.ndarray:
    """``np.flatnonzero(u < chance)`` (``chance`` per element) in one pass, no branches."""
    out = np.empty(u.size, dtype=np.int64)
    k = 0
    for i in range(u.size):
        out[k] = i
        k += u[i] < chance[i]
    return out[:k]


@njit(cache=True, nogil=True)
def below_with_need(u: np.ndarray, chance: float, latest: np.ndarray, day: int) -> np.ndarray:
    """``np.flatnonzero((u < chance) & (latest >= day))`` in one pass, no branches: who
    draws an event that needs an open need, and has one (``latest``: her last open day)."""
    out = np.empty(u.size, dtype=np.int64)
    k = 0
    for i in range(u.size):
        out[k] = i
        k += (u[i] < chance) & (latest[i] >= day)
    return out[:k]


@njit(cache=True, nogil=True)
def compress(value: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """``value[keep]`` for a boolean ``keep``, without a branch per element."""
    out = np.empty(value.size, dtype=value.dtype)
    k = 0
    for i in range(value.size):
        out[k] = value[i]
        k += keep[i]
    return out[:k]


@njit(cache=True, nogil=True)
def reset_in_groups(value: np.ndarray, group: np.ndarray, chosen: np.ndarray, to: float) -> None:
    """``value[i] = to`` for every consumer ``i`` whose group is ``chosen`` (per group)."""
    # One entry more, False, for a non-member's group -1 to read: then the only branch is
    # "chosen", rarely taken and so well guessed, where "a member" is a coin toss.
    padded = np.zeros(chosen.size + 1, dtype=np.bool_)
    padded[: chosen.size] = chosen
    for i in range(group.size):
        if padded[group[i]]:
            value[i] = to


@njit(cache=True, nogil=True)
def add_rows_of(total: np.ndarray, row: np.ndarray, values: np.ndarray, who: np.ndarray) -> None:
    """``total[row[r]] += values[who[r]]`` for each r in turn (float64 sums, in order, as
    ``np.add.at(total, row, values[who])`` adds them), without gathering the rows first."""
    last = who.size - 1
    for r in range(who.size):
        prefetch2(values, who[min(r + AHEAD, last)], 0)
        t, w = row[r], who[r]
        for c in range(values.shape[1]):
            total[t, c] += np.float64(values[w, c])


@njit(cache=True, nogil=True)
def open_needs(
    need_until: np.ndarray,
    latest: np.ndarray,
    who: np.ndarray,
    category: np.ndarray,
    until: np.ndarray,
) -> None:
    """New needs: ``need_until[who, category]`` and ``latest[who]`` rise to ``until`` where
    it is later (each consumer of ``who`` once), loading ahead."""
    last = who.size - 1
    for r in range(who.size):
        ahead = who[min(r + AHEAD, last)]
        prefetch2(need_until, ahead, 0)
        prefetch(latest, ahead)
        w, c = who[r], category[r]
        need_until[w, c] = max(need_until[w, c], until[r])
        latest[w] = max(latest[w], until[r])


@njit(cache=True, nogil=True)
def draw_from_cdf(cdf: np.ndarray, who: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Per consumer ``who[r]``: how many entries of her row of ``cdf`` are below ``u[r]``
    (capped at the last column): an inverse-CDF draw, as ``(cdf[who] < u[:, None]).sum(1)``."""
    out = np.empty(who.size, dtype=np.int64)
    last = cdf.shape[1] - 1
    for r in range(who.size):
        prefetch2(cdf, who[min(r + AHEAD, who.size - 1)], 0)
        row = cdf[who[r]]
        count = 0
        for c in range(row.size):
            if row[c] < u[r]:
                count += 1
        out[r] = min(count, last)
    return out
