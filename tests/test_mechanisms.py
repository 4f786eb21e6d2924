"""The article's mechanisms decide the verdict: vetting capacity, brand selection, after-sales
service with capacity, and money a brand accepts (issue 10).

Comparisons run the same seeds on both sides (common random numbers); a paired difference must
have a 95% Student-t interval that excludes 0.
"""

from __future__ import annotations

import numpy as np
import pytest

from analysis.stats import mean_ci
from sim.world import money
from sim.world.channels import Channel, Source
from sim.world.model import CommerceModel, run
from sim.world.orders import PENDING
from sim.world.params import AfterSalesParams, ParameterError, Params, StreamerParams
from sim.world.service import ServiceDesks, served_share

SEEDS = tuple(range(1, 7))
MORE_SEEDS = tuple(range(1, 9))
# A catalogue large enough for 4x products a session; no contract review inside the run,
# so the streamer keeps her brands and only the lever moves.
WORLD = {"consumers": 20_000, "owners": 100, "brands": 100, "days": 29}


def params(overrides: dict | None = None, **world) -> Params:
    """WORLD with ``world`` changes (``owners`` is the number of owners), then ``overrides``."""
    size = {**WORLD, **world}
    owners = size.pop("owners")
    return Params.from_dict({"world": size, "owners": {"count": owners}}).with_overrides(
        overrides or {}
    )


def value(result, channel: str, metric: str) -> float:
    s = result.summary
    return float(s[(s.channel == channel) & (s.metric == metric)].value.iloc[0])


def paired(a: dict, b: dict, channel: str, metric: str, seeds=SEEDS, **world):
    """Mean and interval of (b - a) over the seeds."""
    diffs = [
        value(run(params({**b, "seed": s}, **world)), channel, metric)
        - value(run(params({**a, "seed": s}, **world)), channel, metric)
        for s in seeds
    ]
    return mean_ci(np.array(diffs))


# -- vetting ------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize(
    ("metric", "sign"), [("vetted_share", -1), ("defect_share", +1), ("return_rate", +1)]
)
def test_more_products_a_session_outrun_the_vetting_team(metric, sign):
    # A team that can check every product of a 30-product session (60 checks a session).
    # Brands of widely spread quality: what her team does not check matters (at the
    # calibrated spread returns are mostly misfit and the difference hides in the noise).
    team = {"streamer.vetting_capacity": 300.0, "brands.quality_concentration": 5.0}
    few = {**team, "streamer.products_per_session": 30}
    many = {**team, "streamer.products_per_session": 120}
    # 60 days: returns lag their orders, and at the calibrated defaults misfit returns dilute
    # the defects' share (29 days left the return difference inside its noise). Returns move
    # least (misfit returns dominate at the calibrated apparel fit noise): their check runs in
    # a larger world for 90 days on 10 seeds (+0.66 points [0.06, 1.25]; at 20,000 consumers
    # and 12 seeds +0.78 [-0.30, 1.85], with defects +3.3 points).
    if metric == "return_rate":
        world = {"consumers": 60_000, "owners": 300, "days": 90}
        m, lo, hi = paired(few, many, "streamer", metric, seeds=tuple(range(1, 11)), **world)
    else:
        m, lo, hi = paired(few, many, "streamer", metric, days=60)
    assert (lo > 0) if sign > 0 else (hi < 0), (metric, m, lo, hi)


def test_vetted_share_is_capacity_over_slots_when_checks_pass():
    """With a threshold every product passes, the vetted share is checks / slots exactly."""
    world = {"world": {"consumers": 3000, "days": 7}, "owners": {"count": 10}}
    p = Params.from_dict(world).with_overrides(
        {
            "streamer.vetting_threshold": 0.0,
            "streamer.vetting_capacity": 50.0,
            "streamer.sessions_per_week": 5.0,
        }
    )
    assert value(run(p), "streamer", "vetted_share") == pytest.approx(10 / 60)


def test_products_a_session_beyond_the_contracted_pool_is_an_error():
    with pytest.raises(ParameterError, match="products_per_session = 200 .* allowed range"):
        Params.from_dict({"streamer": {"products_per_session": 200}})


# -- selection ----------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("metric", ["defect_share", "return_rate"])
def test_lax_brand_selection_raises_owners_defects_and_returns(metric):
    # At the calibrated defaults returns are mostly misfit: screening halves defects but moves
    # returns by about a point (0.096 against 0.106 at 20,000 consumers, 90 days), so this
    # runs the whole season on more seeds.
    strict, lax = {"platform.selection_strictness": 0.8}, {"platform.selection_strictness": 0.0}
    m, lo, hi = paired(strict, lax, "owners", metric, MORE_SEEDS, days=90)
    assert lo > 0, (metric, m, lo, hi)


def test_selection_admits_the_better_audited_brands():
    model = CommerceModel(params({"platform.selection_strictness": 0.5, "seed": 2}))
    admitted = model.accounts.contracts[:, Channel.OWNERS]
    quality = model.catalogue.brand_quality
    assert admitted.sum() == 50
    assert quality[admitted].mean() > quality[~admitted].mean() + 0.05


# -- after-sales --------------------------------------------------------------------------------
def test_served_share_is_capacity_over_load():
    server = np.array([0, 0, 0, 0, 1, 2])
    load = np.array([4.0, 1.0, 1.0])
    share = served_share(server, load, np.array([2.0, 2.0, 0.0]), servers=3)
    assert share.tolist() == [0.5, 0.5, 0.5, 0.5, 1.0, 0.0]


def brand_desk(problems: int, desks: ServiceDesks) -> np.ndarray:
    """Today's resolution chances of ``problems`` streamer problems of brand 0."""
    zeros = np.zeros(problems, dtype=np.int64)
    return desks.resolution(
        np.ones(problems, bool), np.zeros(problems, bool), zeros, np.zeros(problems), 1, zeros
    )


def test_a_burst_of_problems_lowers_resolution():
    p = AfterSalesParams(resolution=0.5, brand_capacity=10.0, queue_days=1.0)
    desks = ServiceDesks(p, brands=1, scale=1.0)
    assert brand_desk(5, desks).tolist() == [0.5] * 5
    assert brand_desk(50, desks) == pytest.approx(np.full(50, 0.5 * 10 / 50))


def test_a_desk_works_through_a_few_days_together():
    """With a memory of 3 days, a day's burst is weighed with the calm days before it."""
    p = AfterSalesParams(resolution=1.0, brand_capacity=10.0, queue_days=3.0)
    desks = ServiceDesks(p, brands=1, scale=1.0)
    for _ in range(30):
        brand_desk(5, desks)  # a calm desk settles at a load of 5
    burst = brand_desk(50, desks)  # load 5 + (50 - 5) / 3 = 20
    assert burst == pytest.approx(np.full(50, 10 / 20))


def test_owner_first_then_platform():
    p = AfterSalesParams(resolution=0.4, owner_resolution=0.5, owner_capacity=5.0)
    desks = ServiceDesks(p, brands=1, scale=1.0)
    problem = np.ones(2, bool)
    chance = desks.resolution(
        problem, np.ones(2, bool), np.array([0, 1]), np.array([1.0, 0.0]), 2, np.zeros(2, np.int64)
    )
    assert chance == pytest.approx([1 - 0.5 * 0.6, 0.4])


def _search_resolution_at_her_brands(overrides: dict, seed: int) -> float:
    """Share of search buyers' problems resolved, among orders of the brands that hold the
    streamer's contract (no review inside WORLD's 29 days, so they hold it all run)."""
    model = CommerceModel(params({**overrides, "seed": seed}))
    hers = model.accounts.contracts[:, Channel.STREAMER].copy()
    for _ in range(model.params.world.days):
        model.step()
    assert np.array_equal(model.accounts.contracts[:, Channel.STREAMER], hers)
    o, n = model.orders, len(model.orders)
    delivered = o["status"][:n] != PENDING
    problem = (o["defect"][:n] | o["misfit"][:n]) & delivered
    mine = problem & (o["channel"][:n] == Channel.CONVENTIONAL) & hers[o["brand"][:n]]
    assert mine.sum() >= 50  # enough problems for a rate
    return float(o["resolved"][:n][mine].mean())


@pytest.mark.slow
def test_a_larger_streamer_audience_crowds_the_brands_desks():
    """The streamer's problems go to the desks of the brands she sells, which serve those
    brands' search orders too: a larger audience means more problems at the same desks, and
    search buyers' problems with her brands are resolved less often. (Measured on her brands:
    the channel-wide rate mixes in the brands she never sells, whose desks she does not load,
    and hid the effect in the noise: -0.005 to -0.014 at 8-16 seeds.)"""
    # Desks a third of the default's: at the calibrated defaults a 200-a-day desk has room
    # for most of a larger audience's problems.
    desk = {"after_sales.brand_capacity": 60.0}
    small = {**desk, "streamer.follower_share": 0.1}
    large = {**desk, "streamer.follower_share": 0.6}
    diffs = [
        _search_resolution_at_her_brands(large, s) - _search_resolution_at_her_brands(small, s)
        for s in range(1, 17)
    ]
    m, lo, hi = mean_ci(np.array(diffs))
    assert hi < 0, (m, lo, hi)  # measured: -0.016 [-0.026, -0.005]


@pytest.mark.slow
def test_brand_desks_with_room_close_much_of_the_return_gap():
    """Give the brands' desks unlimited room (streamer problems served like a calm day): the
    streamer-minus-owners return gap closes by a fifth or more (0.23 at the calibrated
    defaults, 20,000 consumers, 60 days; a third under the hand-set values before them)."""
    big = {"after_sales.brand_capacity": 1e6}
    gaps = {}
    for name, over in (("default", {}), ("room", big)):
        gaps[name] = np.array(
            [
                value(r, "streamer", "return_rate") - value(r, "owners", "return_rate")
                for r in (run(params({**over, "seed": s}, days=60)) for s in MORE_SEEDS)
            ]
        )
    closed = (gaps["default"] - gaps["room"]) / gaps["default"].mean()
    m, lo, _ = mean_ci(closed)
    assert m > 0.15 and lo > 0.05, (m, lo)


# -- money --------------------------------------------------------------------------------------
def test_every_channel_earns_a_brand_a_plausible_margin_at_the_defaults():
    r = run(params({"seed": 3}, days=90, brands=50))
    for channel in ("owners", "streamer", "conventional"):
        assert -0.5 <= value(r, channel, "profit_per_net_rmb") <= 0.6, channel


def test_a_brand_losing_money_leaves_at_its_next_review():
    """A prohibitive slot fee: every contracted brand loses money with the streamer in the
    first month and leaves at the review on day 30; she signs brands that never held her
    contract to fill her sessions; the other channels keep (almost) all their brands."""
    model = CommerceModel(params({"streamer.slot_fee": 1e5, "seed": 1}, days=40))
    first = model.accounts.contracts[:, Channel.STREAMER].copy()
    for _ in range(31):
        model.step()
    now = model.accounts.contracts[:, Channel.STREAMER]
    assert (model.accounts.left_day[first, Channel.STREAMER] == 30).all()
    assert not (now & first).any()
    products = np.bincount(model.catalogue.brand)
    assert products[now].sum() >= model.params.streamer.products_per_session
    assert model.accounts.contracts[:, Channel.CONVENTIONAL].mean() > 0.9
    before = len(model.orders)
    model.step()
    rows = np.arange(before, len(model.orders))
    sold = model.orders["brand"][rows][model.orders["channel"][rows] == Channel.STREAMER]
    assert now[sold].all()


def test_slot_fee_scales_with_expected_viewers():
    p = StreamerParams(slot_fee=30.0, attention_rate=0.2, products_seen=9)
    assert money.slot_fee(p, 2_000_000, 60) == pytest.approx(2 * money.slot_fee(p, 1_000_000, 60))
    # 50M followers -> 10M viewers a session -> 1.5M expected viewers a slot -> 45k RMB.
    assert money.slot_fee(p, 50_000_000, 60) == pytest.approx(45_000)
    # A short session: every viewer sees every slot, and pays for it.
    assert money.slot_fee(p, 1_000_000, 9) == pytest.approx(30.0 * 200_000 / 1000)


# -- hype by format -----------------------------------------------------------------------------
@pytest.mark.slow
def test_hype_belongs_to_the_format_not_the_channel():
    """Posts on 2b-live material carry the material's hype: more of it raises the owners'
    conversion and returns; a live session keeps its own format's hype."""
    plain, hyped = {"hype.material": 0.2}, {"hype.material": 2.0}
    for metric in ("conversion", "return_rate"):
        m, lo, hi = paired(plain, hyped, "owners", metric)
        assert lo > 0, (metric, m, lo, hi)
    model = CommerceModel(params({**hyped, "seed": 1}, days=20))
    for _ in range(20):
        model.step()
    o = model.orders
    hype = o["impulse"] / model.consumers.impulsiveness[o["consumer"]]
    by_owner, live = o["source"] == Source.OWNER, o["source"] == Source.STREAMER
    posts = set(np.round(hype[by_owner].astype(float), 3).tolist())
    assert posts == {0.2, 2.0}  # plain posts and posts on material
    assert np.allclose(hype[live], model.params.hype.live)
