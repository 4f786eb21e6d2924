"""The compiled exposure pass (sim/world/kernels.py) against the numpy functions it fuses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.world import funnel, kernels
from sim.world.params import PurchaseParams


def _random_world(rng, n, cats, products):
    """What a purchase draw reads, at random: per consumer fit (per category), trust,
    impulsiveness, price sensitivity and open needs; each product's category."""
    fit = rng.random((n, cats), dtype=np.float32)
    trust = rng.random(n, dtype=np.float32)
    imp = rng.random(n, dtype=np.float32)
    sens = rng.random(n, dtype=np.float32)
    need_until = rng.integers(-1, 10, (n, cats)).astype(np.int32)
    category = rng.integers(0, cats, products).astype(np.int32)
    return fit, trust, imp, sens, need_until, category


@pytest.mark.parametrize("per_exposure", [False, True])
def test_purchase_draws_are_the_numpy_funnel_to_the_bit(per_exposure):
    # 200,000 exposures of 5,000 consumers over 3 channels, probabilities from ~0 to ~1 (a
    # high intercept, so the early rejection bound and the tanh both decide many draws).
    rng = np.random.default_rng(11)
    n, cats, products, size = 5_000, 8, 300, 200_000
    p = PurchaseParams(intercept=-4.0, fit=2.0, trust=1.8, hype=1.8, price=1.0, need=4.5)
    fit, trust, imp, sens, need_until, category = _random_world(rng, n, cats, products)
    list_price = rng.lognormal(4, 0.5, products)
    discount = np.array([0.1, 0.4, 0.0])
    median = float(np.median(list_price))
    consumer = np.sort(rng.integers(0, n, size))
    product = rng.integers(0, products, size)
    channel = rng.integers(0, 3, size).astype(np.int8) if per_exposure else np.array([1], np.int8)
    hype = rng.random(size) * 2 if per_exposure else np.array([1.0])
    u = rng.random(size)
    day = 5
    ch = np.broadcast_to(channel, (size,))
    cat = category[product]
    paid = list_price[product] * (1.0 - discount[ch])
    need = need_until[consumer, cat] >= day
    prob = funnel.purchase_probability(
        p,
        fit[consumer, cat],
        trust[consumer],
        np.broadcast_to(hype, (size,)),
        imp[consumer],
        paid / median,
        sens[consumer],
        need,
    )
    reached, month = np.zeros((3, n), bool), np.zeros((3, n), bool)
    fit_sum, exposures = np.zeros(3), np.zeros(3)
    log_price = np.log(list_price[None, :] * (1.0 - discount[:, None]) / median)
    coef = np.array([p.intercept, p.fit, p.trust, p.hype, p.price, p.need])
    cand = kernels.purchase_draws(
        consumer,
        product,
        channel,
        hype,
        u,
        category,
        fit,
        trust,
        imp,
        sens,
        log_price,
        need_until,
        day,
        coef,
        reached,
        month,
        fit_sum,
        exposures,
        np.zeros(0, dtype=np.float32),
    )
    expected = np.flatnonzero(u < prob)
    assert 0.05 < expected.size / size < 0.95  # both ways of deciding are exercised
    assert np.array_equal(cand, expected)
    assert np.array_equal(fit_sum, np.bincount(ch, weights=fit[consumer, cat], minlength=3))
    assert np.array_equal(exposures, np.bincount(ch, minlength=3))
    mark = np.zeros((3, n), bool)
    mark[ch, consumer] = True
    assert np.array_equal(reached, mark) and np.array_equal(month, mark)


def test_open_posts_is_the_numpy_step_it_replaces():
    from sim.world.funnel import sigmoid

    rng = np.random.default_rng(5)
    n, m, groups = 20_000, 60, 90
    group = np.where(rng.random(n) < 0.6, rng.integers(0, groups, n), -1).astype(np.int32)
    group_owner = rng.integers(0, m, groups).astype(np.int32)
    posted = rng.random(m) < 0.7
    base = np.clip(rng.random(m) * 0.6, 1e-9, 1 - 1e-9)
    trust = rng.random(n, dtype=np.float32)
    initial, slope = np.float32(0.5), np.float32(2.5)
    # numpy: members of posting owners, their chance, the draws
    members = np.flatnonzero(group >= 0)
    owner = group_owner[group[members]]
    members, owner = members[posted[owner]], owner[posted[owner]]
    assert kernels.posted_members(group, group_owner, posted) == members.size
    u = rng.random(members.size)
    chance = sigmoid(np.log(base / (1 - base))[owner] + 2.5 * (trust[members] - initial))
    opens = u < chance
    got, got_owner = kernels.open_posts(
        group, group_owner, posted, np.log(base / (1 - base)), trust, initial, slope, u
    )
    assert 0.2 < opens.mean() < 0.8
    assert np.array_equal(got, members[opens]) and np.array_equal(got_owner, owner[opens])


def test_post_purchase_draws_are_the_purchase_draws_of_the_expanded_posts():
    from sim.world.ragged import offsets, starts

    rng = np.random.default_rng(12)
    n, cats, n_products, m = 3_000, 8, 300, 40
    fit, trust, imp, sens, need_until, category = _random_world(rng, n, cats, n_products)
    log_price = rng.normal(0.0, 0.3, (3, n_products))
    coef = np.array([-5.0, 2.0, 1.8, 1.8, 1.0, 2.5])  # intercept, fit, trust, hype, price, need
    openers = np.sort(rng.choice(n, 1_500, replace=False))
    owner = rng.integers(0, m, openers.size).astype(np.int32)
    count = rng.integers(0, 4, m)
    products = np.where(rng.random(count.sum()) < 0.9, rng.integers(0, n_products, count.sum()), -1)
    start = starts(count)
    owner_hype = rng.random(m) * 2
    # numpy: every product each opener's owner posted, unstocked picks (-1) skipped
    k = count[owner]
    who, whose = np.repeat(openers, k), np.repeat(owner, k)
    product = products[start[whose] + offsets(k)]
    ok = product >= 0
    who, whose, product = who[ok], whose[ok], product[ok]
    hype = owner_hype[whose]
    u = rng.random(who.size)

    def state():  # reached, month_reached, fit sums, exposures, no stored fits
        return (
            np.zeros((3, n), bool),
            np.zeros((3, n), bool),
            np.zeros(3),
            np.zeros(3),
            np.zeros(0, dtype=np.float32),
        )

    one = np.array([0], dtype=np.int8)
    shared = (category, fit, trust, imp, sens, log_price, need_until, 5, coef)
    s1, s2 = state(), state()
    cand = kernels.purchase_draws(who, product, one, hype, u, *shared, *s1)
    got = kernels.post_purchase_draws(
        openers, owner, start, count, products, owner_hype, 0, u, *shared, *s2
    )
    assert 100 < cand.size < who.size / 2
    expected = (cand, who[cand], product[cand], whose[cand], hype[cand])
    for a, b in zip(got, expected, strict=True):
        assert np.array_equal(a, b)
    for a, b in zip(s1, s2, strict=True):
        assert np.array_equal(a, b)


def test_pick_open_need_is_argmax_over_the_open_categories():
    rng = np.random.default_rng(2)
    need_until = rng.integers(-1, 6, (3000, 8)).astype(np.int32)
    who = rng.integers(0, 3000, 5000)
    score = rng.random((who.size, 8), dtype=np.float32)
    score[:50] = 0.5  # ties: the first open category wins, as with argmax
    open_ = need_until[who] >= 3
    expected = np.where(open_.any(axis=1), np.where(open_, score, -1.0).argmax(axis=1), -1)
    assert (expected == -1).any() and (expected >= 0).any()
    assert np.array_equal(kernels.pick_open_need(need_until, who, 3, score), expected)


def test_recruitment_and_invitation_passes_are_the_numpy_steps_they_replace():
    from sim.world.ragged import run_starts

    rng = np.random.default_rng(9)
    n, m, groups = 30_000, 80, 120
    group = np.where(rng.random(n) < 0.5, rng.integers(0, groups, n), -1).astype(np.int32)
    group_owner = rng.integers(0, m, groups).astype(np.int32)
    active = rng.random(m) < 0.8
    trust = (rng.integers(0, 20, n) / 20).astype(np.float32)  # many exactly at the bar
    bar = np.float32(0.7)
    # numpy: the pool, each unit's member with the lowest key, members' invitations
    in_group = np.flatnonzero(group >= 0)
    g = group[in_group]
    owner = group_owner[g]
    live = active[owner]
    eligible = trust[in_group] >= 0.7
    unit = np.where(live, owner, m + g)[eligible]
    pool = in_group[eligible]
    counted = kernels.count_recruitment(group, group_owner, active, trust, bar)
    assert counted == (pool.size, int(live.sum()))
    key = np.floor(rng.random(pool.size) * 50) / 50  # ties: the first in consumer order wins
    by_unit = np.lexsort((key, unit))
    expected = pool[by_unit][run_starts(unit[by_unit])]
    got = kernels.recruitment_in_view(group, group_owner, active, trust, bar, m, key)
    assert np.array_equal(got, expected) and got.size == np.unique(unit).size
    u = rng.random(counted[1])
    invites = u < 0.3 * trust[in_group[live]]
    who, where = kernels.member_invitations(group, group_owner, active, trust, np.float32(0.3), u)
    assert np.array_equal(who, in_group[live][invites])
    assert np.array_equal(where, g[live][invites]) and where.dtype == g.dtype


def test_active_member_values_are_the_numpy_masked_values():
    rng = np.random.default_rng(4)
    group = np.where(rng.random(5000) < 0.5, rng.integers(0, 40, 5000), -1).astype(np.int32)
    group_owner = rng.integers(0, 25, 40).astype(np.int32)
    active = rng.random(25) < 0.6
    trust = rng.random(5000, dtype=np.float32)
    expected = trust[(group >= 0) & active[group_owner[np.maximum(group, 0)]]]
    got = kernels.active_member_values(group, group_owner, active, trust)
    assert 0 < got.size < 5000 and got.dtype == np.float32
    assert np.array_equal(got, expected)


def test_add_rows_of_is_numpy_add_at_to_the_bit():
    rng = np.random.default_rng(5)
    row = rng.integers(0, 30, 4000)
    values = rng.random((900, 7), dtype=np.float32) * 1e3
    who = rng.integers(0, 900, row.size)
    expected = np.zeros((30, 7))
    np.add.at(expected, row, values[who])
    total = np.zeros((30, 7))
    kernels.add_rows_of(total, row, values, who)
    assert np.array_equal(total, expected)


def test_open_needs_is_the_numpy_update():
    rng = np.random.default_rng(14)
    need_until = rng.integers(-1, 20, (5000, 9)).astype(np.int32)
    latest = need_until.max(axis=1)
    who = rng.choice(5000, 1500, replace=False)
    category = rng.integers(0, 9, who.size)
    until = rng.integers(0, 30, who.size).astype(np.int32)
    expected_need, expected_latest = need_until.copy(), latest.copy()
    expected_need[who, category] = np.maximum(expected_need[who, category], until)
    expected_latest[who] = np.maximum(expected_latest[who], until)
    kernels.open_needs(need_until, latest, who, category, until)
    assert np.array_equal(need_until, expected_need) and np.array_equal(latest, expected_latest)


def test_draw_from_cdf_is_the_numpy_inverse_cdf_draw():
    rng = np.random.default_rng(6)
    pref = rng.dirichlet(np.ones(9), 2000).astype(np.float32)
    cdf = np.cumsum(pref, axis=1, dtype=np.float32)
    cdf[:, -1] = 1.0
    who = rng.integers(0, 2000, 50_000)
    u = rng.random(who.size, dtype=np.float32)
    u[:5] = [0.0, 1.0, cdf[who[2], 3], cdf[who[3], 0], np.nextafter(np.float32(1), 0)]
    expected = np.minimum((cdf[who] < u[:, None]).sum(axis=1), 8)
    got = kernels.draw_from_cdf(cdf, who, u)
    assert np.array_equal(got, expected)
    # the draw follows the preferences: shares by category match the mean preference
    share = np.bincount(got, minlength=9) / got.size
    assert np.allclose(share, pref[who].mean(axis=0), atol=0.01)


@pytest.mark.parametrize(
    "x", [-40.0, -8.0, -3.0, -1.0000001, -1.0, -0.99, -0.2, -1e-9, 0.0, 1e-9, 0.5, 1.0, 1.5, 40.0]
)
def test_the_bounded_logistic_draw_is_the_tanh_draw(x):
    # (the compiled tanh, which may differ from numpy's in the last bit: see kernels' doc)
    exact = 0.5 * (1.0 + math.tanh(0.5 * x))
    near = [exact, np.nextafter(exact, 0), np.nextafter(exact, 1)]
    u = np.r_[np.linspace(0.0, 1.0, 20_001), near, [v * (1 + 1e-13) for v in near]]
    got = np.array([kernels.below_logistic(v, x) for v in u])
    assert np.array_equal(got, u < exact)


def test_compress_is_boolean_indexing():
    rng = np.random.default_rng(7)
    value = rng.random(10_001, dtype=np.float32)
    for share in (0.0, 0.3, 1.0):
        keep = rng.random(value.size) < share
        assert np.array_equal(kernels.compress(value, keep), value[keep])


def test_reset_in_groups_sets_the_chosen_groups_members_only():
    rng = np.random.default_rng(8)
    group = np.where(rng.random(3000) < 0.5, rng.integers(0, 60, 3000), -1).astype(np.int32)
    chosen = np.zeros(60, dtype=bool)
    chosen[[3, 17, 59]] = True
    value = rng.random(3000, dtype=np.float32)
    expected = value.copy()
    expected[np.isin(group, [3, 17, 59])] = np.float32(0.25)
    kernels.reset_in_groups(value, group, chosen, np.float32(0.25))
    assert np.array_equal(value, expected)


def test_leaving_members_is_the_numpy_leave_draw():
    rng = np.random.default_rng(9)
    group = np.where(rng.random(8000) < 0.4, rng.integers(0, 50, 8000), -1).astype(np.int32)
    trust = rng.random(8000, dtype=np.float32)
    members = np.flatnonzero(group >= 0)
    u = rng.random(members.size)
    expected = members[(trust[members] < 0.3) & (u < 0.5)]
    got = kernels.leaving_members(group, trust, np.float32(0.3), 0.5, u)
    assert 0 < got.size and np.array_equal(got, expected)
    none = np.full(100, -1, dtype=np.int32)
    assert kernels.leaving_members(none, trust[:100], np.float32(0.3), 0.5, u[:0]).size == 0
    who, where = kernels.member_invitations(
        none, np.zeros(1, np.int32), np.ones(1, bool), trust[:100], np.float32(0.3), u[:0]
    )
    assert who.size == where.size == 0


def test_the_member_passes_with_no_group_at_all():
    # Branch-free passes read a non-member's owner at index -1: with no group there is none.
    group = np.full(50, -1, dtype=np.int32)
    none = np.zeros(0, dtype=np.int32)
    trust = np.ones(50, dtype=np.float32)
    active = np.zeros(0, dtype=bool)
    assert kernels.count_recruitment(group, none, active, trust, np.float32(0.5)) == (0, 0)
    assert kernels.posted_members(group, none, active) == 0
    assert kernels.active_member_values(group, none, active, trust).size == 0


def test_the_bounded_logistic_draw_at_its_threshold_for_many_chances():
    # Draws one and two ulps either side of the exact chance, for chances across the range.
    rng = np.random.default_rng(10)
    xs = np.r_[rng.normal(0, 3, 1500), rng.uniform(-1, 1, 500), [-1.0, 1.0, -0.0, 1e-300]]
    for x in xs:
        exact = 0.5 * (1.0 + math.tanh(0.5 * x))
        below = [np.nextafter(exact, 0), np.nextafter(np.nextafter(exact, 0), 0)]
        above = [exact, np.nextafter(exact, 1), np.nextafter(np.nextafter(exact, 1), 1)]
        assert all(kernels.below_logistic(u, x) for u in below), x
        assert not any(kernels.below_logistic(u, x) for u in above if u < 1.0), x


def test_below_and_below_with_need_are_the_numpy_masks():
    rng = np.random.default_rng(13)
    u = rng.random(20_001)
    chance = rng.random(u.size, dtype=np.float32) * 0.2
    assert np.array_equal(kernels.below(u, chance), np.flatnonzero(u < chance))
    latest = rng.integers(-1, 9, u.size).astype(np.int32)
    expected = np.flatnonzero((u < 0.3) & (latest >= 4))
    assert expected.size > 1000
    assert np.array_equal(kernels.below_with_need(u, 0.3, latest, 4), expected)
    assert kernels.below(u[:0], chance[:0]).size == 0


def test_engaged_is_the_engagement_rule_of_the_consumers():
    from sim.world.funnel import sigmoid

    rng = np.random.default_rng(15)
    trust = rng.random(20_000, dtype=np.float32)
    who = np.sort(rng.choice(20_000, 6_000, replace=False))
    initial, slope, base = np.float32(0.5), np.float32(2.5), 0.3
    logit = float(np.log(base / (1 - base)))
    u = rng.random(who.size)
    chance = sigmoid(logit + slope * (trust[who] - initial))
    expected = who[u < chance]
    got = kernels.engaged(who, trust, initial, slope, logit, u)
    assert 0.2 < expected.size / who.size < 0.5
    assert np.array_equal(got, expected)
