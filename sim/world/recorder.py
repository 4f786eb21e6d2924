"""Recording (ODD 7.10): the day's state at the end of every day, and a run's output tables.

:func:`record_state` is the last sub-step of the schedule: it sets the day's state metrics in
the model's :class:`~sim.world.metrics.TickRecorder` (reach, buyers, trust, active owners,
members, followers, brands) and closes the day; every 30th day it closes the month's window of
buyers and reach (group conversion is monthly). The output tables are read from a model at
any time: :func:`summary` (one row per channel and metric, :func:`sim.world.metrics.summarise`
plus :func:`pattern_metrics`), :func:`owner_table` (one row per owner) and
:func:`consumer_states` (each consumer's state, for drawings of the network).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from sim.world import kernels
from sim.world.channels import CHANNELS, Channel, Source
from sim.world.demand import MONTH
from sim.world.metrics import summarise
from sim.world.orders import RETURNED

if TYPE_CHECKING:
    from sim.world.model import CommerceModel

# The states of :func:`consumer_states`, by index.
CONSUMER_STATES = (
    "unreached",
    "exposed by owners",
    "exposed by streamer",
    "exposed by search",
    "bought",
    "returned",
)


def record_state(model: CommerceModel) -> None:
    """Record the end of the day: reach (over the run), today's buyers, mean trust (in the
    owner of members of active owners, in the streamer of her followers, in search and friends
    of everyone), active owners, members, followers and brands per channel; then close the day
    in ``model.recorder``. On every 30th day, append the month's (buyers, reached) counts to
    ``model.monthly`` and clear the month's flags."""
    rec, con, o = model.recorder, model.consumers, model.orders
    reach = model.reached.sum(axis=1)
    rec.set("reach", np.r_[reach, model.reached.any(axis=0).sum()])
    today = np.arange(model.first_order_today, len(o))
    ch = o["channel"][today]
    who = o["consumer"][today]
    buyers = [np.unique(who[ch == c]).size for c in range(len(CHANNELS))]
    rec.set("buyers", np.r_[buyers, np.unique(who).size])
    if model.owners.m:
        own = model.owners
        members_trust = kernels.active_member_values(
            con.group, own.group_owner, own.active, con.trust[Source.OWNER]
        )
    else:
        members_trust = con.trust[Source.OWNER][con.group >= 0]
    rec.set(
        "trust",
        [
            _mean(members_trust),
            _mean(kernels.compress(con.trust[Source.STREAMER], con.follows)),
            _mean(con.trust[Source.SEARCH]),
            _mean(con.trust[Source.FRIEND]),
        ],
    )
    active = float(model.owners.active.sum())
    fans = float(con.follows.sum())
    members = float(model.owners.members() @ model.owners.active)
    rec.set("active_owners", [active, np.nan, np.nan, active])
    rec.set("members", [members, np.nan, np.nan, members])
    rec.set("followers", [np.nan, fans, np.nan, fans])
    rec.set("brands", model.accounts.in_channel())
    rec.finish()
    if (model.day + 1) % MONTH == 0:
        model.monthly.append(month_counts(model))
        model.month_reached[:] = False
        model.month_bought[:] = False


def month_counts(model: CommerceModel) -> np.ndarray:
    """(buyers, reached) in the current 30-day window: a (2 x channels + all) array."""
    bought, reached = model.month_bought, model.month_reached
    return np.array(
        [
            [*bought.sum(axis=1), bought.any(axis=0).sum()],
            [*reached.sum(axis=1), reached.any(axis=0).sum()],
        ]
    )


def monthly_windows(model: CommerceModel) -> np.ndarray:
    """Completed 30-day windows as an array (window, buyers/reached, column); a run
    shorter than a month gives its one partial window."""
    return np.array(model.monthly) if model.monthly else month_counts(model)[None]


def consumer_states(model: CommerceModel) -> np.ndarray:
    """Each consumer's state now, as an index into :data:`CONSUMER_STATES`: returned an
    order, else bought, else exposed (owners first, then streamer, then search), else
    unreached. For drawings of the network."""
    state = np.zeros(model.n, dtype=np.int8)
    for code, channel in (
        (3, Channel.CONVENTIONAL),
        (2, Channel.STREAMER),
        (1, Channel.OWNERS),
    ):
        state[model.reached[channel]] = code
    o = model.orders
    state[o["consumer"]] = 4
    state[o["consumer"][o["status"] == RETURNED]] = 5
    return state


def owner_table(model: CommerceModel) -> pd.DataFrame:
    """One row per owner: when she joined and quit (-1: still active), her groups, members
    at the start (0 for a recruit), at the end and on average, skill, earnings, sales."""
    own = model.owners
    days = max(model.day + 1, 1)
    return pd.DataFrame(
        {
            "owner": np.arange(own.m),
            "consumer": own.node,
            "joined_day": own.joined_day,
            "quit_day": own.quit_day,
            "groups": own.groups,
            "members_start": np.r_[
                model.members_at_start, np.zeros(own.m - model.members_at_start.size, int)
            ],
            "members_end": own.members(),
            "members_mean": own.member_days / np.maximum(days - own.joined_day, 1),
            "skill": own.skill,
            "earnings": own.earnings,
            "sales": own.sales,
            "active": own.active,
        }
    )


def summary(model: CommerceModel) -> pd.DataFrame:
    """Run summary: one row per (channel, metric)."""
    table = summarise(
        model.recorder, model.orders, model.n, model.owners.earnings, model.catalogue.apparel
    )
    return pd.concat([table, pattern_metrics(model)], ignore_index=True)


MIN_MEMBER_MONTHS = 1.0  # exposure an owner needs before her sales per member-month count
TAIL_SHARE = 0.05  # the top share of owners T7's tail estimate reads


def tail_quantile(x: np.ndarray, q: float, tail_share: float = TAIL_SHARE) -> float:
    """The ``q`` quantile of a heavy upper tail, extrapolated from the top ``tail_share``.

    Weissman's (1978) estimator: with ``k`` the top ``tail_share`` of the ``n`` values (at
    least 2), ``u`` the largest value below them and ``g`` the Hill (1975) estimate of the tail
    index (the mean log excess of the top ``k`` over ``u``),
    ``u * (k / (n * (1 - q))) ** g``. The empirical quantile of a few dozen values is biased
    low for a far quantile (the 99th percentile of 70 owners sits between the two largest),
    so T7 read in a world of 10,000 consumers was 12% below the same owners' pooled value;
    this estimate reads the same tail at every size (docs/calibration/calibration.md, scale
    check). Falls back to the empirical quantile when the tail cannot be read (fewer than
    ``k + 1`` values, or ``u <= 0``).

    References: Weissman, I. (1978), JASA 73:812-815; Hill, B. M. (1975), Ann. Stat. 3:1163.

    >>> x = 1.0 / np.linspace(1, 1e-4, 10_000)  # Pareto quantiles, tail index 1: q99 = 100
    >>> round(tail_quantile(x, 0.99), -1)
    100.0
    """
    x = np.sort(np.asarray(x, dtype=float))
    n = x.size
    k = max(2, int(round(tail_share * n)))
    if n <= k or x[n - k - 1] <= 0.0 or k < n * (1.0 - q):
        return float(np.quantile(x, q)) if n else float("nan")
    u = x[n - k - 1]
    g = float(np.mean(np.log(x[n - k :])) - np.log(u))
    return float(u * (k / (n * (1.0 - q))) ** g)


def pattern_metrics(model: CommerceModel) -> pd.DataFrame:
    """Monthly group conversion (T5) and owners' monthly sales per member (T7)."""
    windows = monthly_windows(model)
    buyers, reached = windows[:, 0].sum(axis=0), windows[:, 1].sum(axis=0)
    rows = [
        (name, "monthly_buyer_conversion", float(b / r) if r else float("nan"))
        for name, b, r in zip([*CHANNELS, "all"], buyers, reached, strict=True)
    ]
    member_months = model.owners.member_days / MONTH
    # Owners with less than one member-month (a recruit's first days, a one-member group) are
    # not measured: a few member-days make sales per member-month explode (T7's top 1% was
    # such an owner: 298 RMB at 10,000 consumers against 62 without them).
    has = member_months >= MIN_MEMBER_MONTHS
    if not model.params.channels.owners:
        has[:] = False  # no owner network: nothing to measure (NaN, as other owner metrics)
    per_member = model.owners.sales[has] / member_months[has]
    median = float(np.quantile(per_member, 0.5)) if per_member.size else float("nan")
    for label, value in (("median", median), ("p99", tail_quantile(per_member, 0.99))):
        for name in (CHANNELS[Channel.OWNERS], "all"):
            rows.append((name, f"owner_sales_per_member_month_{label}", value))
    return pd.DataFrame(rows, columns=["channel", "metric", "value"])


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")
