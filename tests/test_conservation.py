"""Accounting identities that must hold in every run."""

import numpy as np
import pytest

from conftest import small
from sim.world.channels import CHANNELS
from sim.world.metrics import COST_KINDS, FLOW_METRICS
from sim.world.model import CommerceModel, run


@pytest.fixture(scope="module")
def result():
    return run(small({"seed": 21, "world.days": 40}))


def test_returns_never_exceed_delivered(result):
    ts = result.timeseries
    assert (ts.returns <= ts.delivered).all()
    o = result.orders
    assert ((o.status == "returned").sum()) <= (o.status != "pending").sum()


def test_net_gmv_is_gmv_minus_returned_value(result):
    s = result.summary.set_index(["channel", "metric"]).value
    for ch in [*CHANNELS, "all"]:
        assert s[(ch, "net_gmv")] == pytest.approx(s[(ch, "gmv")] - s[(ch, "returned_value")])
    o = result.orders
    assert s[("all", "gmv")] == pytest.approx(o.paid.sum())
    assert s[("all", "returned_value")] == pytest.approx(o.paid[o.status == "returned"].sum())


def test_reach_never_exceeds_the_population(result):
    ts = result.timeseries
    n = result.params.world.consumers
    assert (ts.reach <= n).all()
    wide = ts.pivot(index="day", columns="channel", values="reach")
    assert (wide["all"] <= wide[list(CHANNELS)].sum(axis=1)).all()
    assert (wide["all"] >= wide[list(CHANNELS)].max(axis=1)).all()
    assert (wide.diff().fillna(0) >= 0).all().all()  # cumulative


def test_channel_flows_add_up_to_the_totals(result):
    ts = result.timeseries
    for metric in FLOW_METRICS:
        by_day = ts[ts.channel != "all"].groupby("day")[metric].sum()
        total = ts[ts.channel == "all"].set_index("day")[metric]
        np.testing.assert_allclose(by_day.to_numpy(), total.to_numpy(), rtol=1e-9, atol=1e-6)


def test_orders_and_costs_match_the_order_book(result):
    s = result.summary.set_index(["channel", "metric"]).value
    o = result.orders
    for ch in CHANNELS:
        mine = o[o.channel == ch]
        assert s[(ch, "orders")] == len(mine)
        assert s[(ch, "returns")] == (mine.status == "returned").sum()
        kept = mine[mine.status != "returned"]
        assert s[(ch, "discount")] == pytest.approx((kept.list_price - kept.paid).sum())
    assert s[("all", "brand_cost")] == pytest.approx(sum(s[("all", k)] for k in COST_KINDS))


def test_profit_identity(result):
    """Brand profit = list value of kept orders - their cost of goods - brand cost."""
    o = result.orders
    s = result.summary.set_index(["channel", "metric"]).value
    cost_of_goods = CommerceModel(result.params).catalogue.cost  # same seed, same world
    kept = o.status != "returned"
    margin = (o.list_price[kept] - cost_of_goods[o["product"][kept]]).sum()
    assert s[("all", "brand_profit")] == pytest.approx(margin - s[("all", "brand_cost")], rel=1e-9)


def test_rates_are_rates(result):
    s = result.summary
    for metric in (
        "conversion",
        "buyer_conversion",
        "return_rate",
        "reach_share",
        "repeat_purchase_rate",
    ):
        v = s[s.metric == metric].value.dropna()
        assert ((v >= 0) & (v <= 1)).all(), metric


def test_apparel_return_rate_matches_the_order_book(result):
    o = result.orders.merge(result.products[["product", "apparel"]], on="product")
    s = result.summary.set_index(["channel", "metric"]).value
    for ch in CHANNELS:
        done = o[(o.channel == ch) & (o.status != "pending") & o.apparel]
        assert s[(ch, "apparel_return_rate")] == pytest.approx((done.status == "returned").mean())


def test_visit_conversion_counts_direct_orders_per_visit(result):
    s = result.summary.set_index(["channel", "metric"]).value
    o = result.orders
    for ch in CHANNELS:
        direct = ((o.channel == ch) & (o.source != "friend")).sum()
        assert s[(ch, "visit_conversion")] == pytest.approx(direct / s[(ch, "visits")])


def test_owner_sales_add_up_to_the_owners_channel(result):
    o = result.orders
    kept = o[(o.channel == "owners") & (o.status != "returned")]
    assert result.owners.sales.sum() == pytest.approx(kept.paid.sum())


def test_monthly_conversion_matches_the_order_book():
    res = run(small({"seed": 2, "world.days": 60}))
    s = res.summary.set_index(["channel", "metric"]).value
    o = res.orders
    o = o[o.channel == "owners"]
    buyers = sum(o[(o.day >= 30 * w) & (o.day < 30 * (w + 1))].consumer.nunique() for w in (0, 1))
    rate = s[("owners", "monthly_buyer_conversion")]
    assert 0 < rate < 1
    # The numerator is the monthly buyers; the denominator, the monthly reached.
    assert buyers / rate == pytest.approx(round(buyers / rate), abs=1e-6)
