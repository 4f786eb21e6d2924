"""Declared outputs: the per-tick time series and the per-run summary, split by channel.

Every metric is declared once, as a :class:`Metric` in :data:`METRICS`, with its meaning,
numerator and denominator, unit and which way is better; the model fills a
:class:`TickRecorder` each day and :func:`summarise` derives the run summary from the recorder
and the order book. Both come back as tidy pandas DataFrames: the time series has one row per
(day, channel), the summary one row per (channel, metric). Channels are ``owners``,
``streamer``, ``conventional`` and their total ``all``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sim.world.channels import ALL, CHANNELS, Channel
from sim.world.orders import KEPT, RETURNED, Orders
from sim.world.ragged import first_of_run, run_starts


@dataclass(frozen=True)
class Metric:
    """One output, declared once: what it means, how it is computed, its unit, which way is
    better. Reports, sensitivity analysis, the view and docs/ODD.md read these declarations.

    ``timing`` is ``flow`` (a per-day amount; summed over the run and across channels),
    ``state`` (read each day: a union or a mean) or ``summary`` (only at the end of a run).
    A ratio names its ``numerator`` and ``denominator``. ``better`` is ``higher``, ``lower``
    or ``neither`` (a size or a cost that is a matter of scale, not of quality).
    """

    name: str
    meaning: str
    unit: str
    better: str = "neither"
    timing: str = "summary"
    numerator: str = ""
    denominator: str = ""

    @property
    def is_share(self) -> bool:
        return self.unit == "share"


_FLOWS = [
    Metric(
        "visits",
        "a consumer's visit to a channel: a group post opened, a session watched, a search",
        "visits",
        "higher",
    ),
    Metric(
        "exposures",
        "product exposures (one consumer seeing one product once)",
        "exposures",
        "higher",
    ),
    Metric("orders", "orders placed", "orders", "higher"),
    Metric(
        "wom_exposures", "exposures by a friend's forward (word of mouth)", "exposures", "higher"
    ),
    Metric("wom_orders", "orders placed after a friend's forward", "orders", "higher"),
    Metric("gmv", "value of orders placed, at the price paid", "RMB", "higher"),
    Metric("wom_gmv", "value of orders placed after a friend's forward", "RMB", "higher"),
    Metric("delivered", "orders delivered", "orders"),
    Metric("defects", "delivered orders that were defective", "orders", "lower"),
    Metric("returns", "orders returned (decided at delivery)", "orders", "lower"),
    Metric("returned_value", "price paid of returned orders, refunded", "RMB", "lower"),
    Metric("net_gmv", "gmv minus returned value", "RMB", "higher"),
    Metric("commission", "commission the brand pays the seller, net of returned orders", "RMB"),
    Metric("slot_fee", "streamer slot fees", "RMB"),
    Metric("discount", "list price minus price paid, net of returned orders", "RMB"),
    Metric("reverse_logistics", "cost of handling returns", "RMB", "lower"),
    Metric("write_off", "cost of goods of returned defective items", "RMB", "lower"),
    Metric("ads", "search and ad spend", "RMB"),
    Metric("platform_take", "the selling platform's share of sales, net of returns", "RMB"),
    Metric(
        "exchanges",
        "cost of resolving problems: shipping and handling, and the cost of goods of a "
        "defective item exchanged",
        "RMB",
        "lower",
    ),
    Metric(
        "brand_cost",
        "commission + slot fee + discount + reverse logistics + write-off + ads + platform "
        "take + exchanges",
        "RMB",
        "lower",
    ),
    Metric("brand_profit", "list value kept - cost of goods kept - brand cost", "RMB", "higher"),
    Metric(
        "seller_earnings",
        "what owners (owners channel) or the streamer earn: commission + fees",
        "RMB",
        "higher",
    ),
    Metric(
        "problems",
        "delivered orders with a problem (defective or a misfit) that needs after-sales",
        "orders",
        "lower",
    ),
    Metric(
        "resolved",
        "problems resolved by after-sales service (owner, platform or brand) before a return",
        "orders",
        "higher",
    ),
    Metric("slots", "product slots on air in the streamer's sessions (streamer)", "slots"),
    Metric(
        "vetted_slots",
        "slots whose product her team checked before the session (streamer)",
        "slots",
        "higher",
    ),
    Metric(
        "joined_members",
        "consumers joining an owner's group by invitation (owners)",
        "members",
        "higher",
    ),
    Metric("recruited_owners", "members recruited as new owners (owners)", "owners", "higher"),
    Metric(
        "quit_owners",
        "owners quitting, at the baseline rate or for low earnings (owners)",
        "owners",
        "lower",
    ),
    Metric(
        "new_followers",
        "consumers starting to follow the streamer (streamer)",
        "followers",
        "higher",
    ),
]
_STATES = [
    Metric(
        "reach",
        "unique consumers who saw a product of the channel so far (cumulative)",
        "consumers",
        "higher",
    ),
    Metric("buyers", "unique consumers ordering today", "consumers", "higher"),
    Metric(
        "satisfaction",
        "mean satisfaction with orders delivered: today (time series), over the run (summary)",
        "score",
        "higher",
    ),
    Metric("fit", "mean expected fit of today's exposures", "score", "higher"),
    Metric(
        "trust",
        "mean trust in the channel's own source: members in their owner, followers in "
        "the streamer, everyone in search; for 'all', in friends (summary: at the end)",
        "trust",
        "higher",
    ),
    Metric("active_owners", "owners still active (owners and all rows)", "owners", "higher"),
    Metric(
        "members", "consumers in an active owner's group (owners and all rows)", "members", "higher"
    ),
    Metric("followers", "streamer followers (streamer and all rows)", "followers", "higher"),
    Metric(
        "brands",
        "brands holding a contract in the channel (all: in at least one channel)",
        "brands",
        "higher",
    ),
]
_SUMMARIES = [
    Metric(
        "reach_share",
        "share of consumers who saw a product of the channel",
        "share",
        "higher",
        numerator="reach",
        denominator="consumers",
    ),
    Metric(
        "reach_day_half",
        "first day reach passed half its final value (speed of reach)",
        "days",
        "lower",
    ),
    Metric(
        "conversion",
        "orders per product exposure",
        "share",
        "higher",
        numerator="orders",
        denominator="exposures",
    ),
    Metric(
        "products_per_visit",
        "products a visit shows: a group post's products, the stretch of "
        "a session watched, a search's results",
        "exposures/visit",
        numerator="exposures - wom_exposures",
        denominator="visits",
    ),
    Metric(
        "visit_conversion",
        "orders placed on a visit (not after a friend's forward) per visit; "
        "for the streamer, orders per viewer-session",
        "share",
        "higher",
        numerator="orders - wom_orders",
        denominator="visits",
    ),
    Metric(
        "buyer_conversion",
        "buyers over the run per consumer reached over the run",
        "share",
        "higher",
        numerator="buyers",
        denominator="reach",
    ),
    Metric(
        "monthly_buyer_conversion",
        "consumers ordering in a 30-day window per consumer reached "
        "in it, over completed windows (a run shorter than 30 days: its one window; T5 for "
        "owners)",
        "share",
        "higher",
        numerator="buyers in the window",
        denominator="consumers reached in the window",
    ),
    Metric(
        "return_rate",
        "returns per delivered order",
        "share",
        "lower",
        numerator="returns",
        denominator="delivered",
    ),
    Metric(
        "apparel_return_rate",
        "returns per delivered order, apparel-like products only",
        "share",
        "lower",
        numerator="returns of apparel-like products",
        denominator="delivered apparel-like products",
    ),
    Metric(
        "defect_share",
        "delivered orders that were defective",
        "share",
        "lower",
        numerator="defects",
        denominator="delivered",
    ),
    Metric(
        "resolution_rate",
        "problems resolved by after-sales service per problem",
        "share",
        "higher",
        numerator="resolved",
        denominator="problems",
    ),
    Metric(
        "vetted_share",
        "slots on air whose product was checked by her team (streamer)",
        "share",
        "higher",
        numerator="vetted_slots",
        denominator="slots",
    ),
    Metric(
        "wom_share",
        "orders placed after a friend's forward",
        "share",
        numerator="wom_orders",
        denominator="orders",
    ),
    Metric(
        "repeat_purchase_rate",
        "buyers with a second order on a later day within 90 days of "
        "their first, among buyers whose first order came at least 90 days before the end "
        "(full follow-up; NaN when the run is shorter than 91 days)",
        "share",
        "higher",
        numerator="cohort buyers ordering again within 90 days",
        denominator="buyers with a first order on day <= days - 91",
    ),
    Metric(
        "profit_per_order",
        "brand profit per order placed",
        "RMB/order",
        "higher",
        numerator="brand_profit",
        denominator="orders",
    ),
    Metric(
        "profit_per_net_rmb",
        "brand profit per RMB of sales kept",
        "RMB/RMB",
        "higher",
        numerator="brand_profit",
        denominator="net_gmv",
    ),
    Metric(
        "owner_earnings_gini",
        "Gini coefficient of owners' total earnings (all owners)",
        "index",
        "lower",
    ),
    Metric(
        "owner_sales_per_member_month_median",
        "median over owners (with at least one member-month) of sales through her links per "
        "member-month of her active groups (T7)",
        "RMB/member-month",
        "higher",
        numerator="owner's sales",
        denominator="owner's member-days / 30",
    ),
    Metric(
        "owner_sales_per_member_month_p99",
        "99th percentile of the same (the top 1% of owners), read from the top 5% by "
        "Weissman's tail estimate (recorder.tail_quantile)",
        "RMB/member-month",
        "higher",
        numerator="owner's sales",
        denominator="owner's member-days / 30",
    ),
    Metric(
        "top_seller_share",
        "largest single seller's share of GMV (owners and the streamer)",
        "share",
        "lower",
        numerator="largest seller's gmv",
        denominator="gmv",
    ),
]

METRICS: dict[str, Metric] = {
    **{m.name: dataclasses.replace(m, timing="flow") for m in _FLOWS},
    **{m.name: dataclasses.replace(m, timing="state") for m in _STATES},
    **{m.name: m for m in _SUMMARIES},
}

# Flow metrics add up across channels; the "all" column of a flow is the sum of the channels.
FLOW_METRICS: dict[str, str] = {m.name: m.meaning for m in _FLOWS}
# What a brand pays, by kind; brand_cost is their sum.
COST_KINDS = (
    "commission",
    "slot_fee",
    "discount",
    "reverse_logistics",
    "write_off",
    "ads",
    "platform_take",
    "exchanges",
)
# State metrics are read, not summed: reach is a union, trust and satisfaction are means.
STATE_METRICS: dict[str, str] = {m.name: m.meaning for m in _STATES}
TICK_METRICS: dict[str, str] = {**FLOW_METRICS, **STATE_METRICS}
# The run summary: flows totalled over the run, states at the end, then the ratios.
SUMMARY_METRICS: dict[str, str] = {
    name: f"total over the run: {m.meaning}" if m.timing == "flow" else m.meaning
    for name, m in METRICS.items()
    if name != "fit"  # fit is a daily diagnostic only
}
FOLLOW_UP = 90  # days of follow-up for repeat purchase (T6)


def metric_table() -> str:
    """The metric table of docs/ODD.md as Markdown (generated from :data:`METRICS`)."""
    rows = [
        "| metric | timing | meaning | numerator / denominator | unit | better |",
        "|---|---|---|---|---|---|",
    ]
    for m in METRICS.values():
        ratio = f"`{m.numerator}` / `{m.denominator}`" if m.denominator else ""
        rows.append(f"| `{m.name}` | {m.timing} | {m.meaning} | {ratio} | {m.unit} | {m.better} |")
    return "\n".join(rows)


_INDEX = {name: i for i, name in enumerate(TICK_METRICS)}
N_COLS = len(CHANNELS) + 1  # channels, then all
ALL_COL = len(CHANNELS)


class TickRecorder:
    """Accumulates one (metric x channel) matrix per tick."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []
        self._today: np.ndarray = np.zeros((0, N_COLS))  # set by start()

    def start(self) -> None:
        self._today = np.zeros((len(TICK_METRICS), N_COLS))
        self._today[_INDEX["satisfaction"]] = np.nan
        self._today[_INDEX["fit"]] = np.nan
        self._fit_sum = np.zeros(N_COLS)
        self._fit_n = np.zeros(N_COLS)

    def add(self, metric: str, channel: np.ndarray | int, values: np.ndarray | float = 1.0) -> None:
        """Add a flow: per-element channel codes and values (or one channel and a total)."""
        row = self._today[_INDEX[metric]]
        if np.ndim(channel) == 0:
            row[int(channel)] += float(np.sum(values))
        else:
            w = np.broadcast_to(values, np.shape(channel)).astype(np.float64)
            row[: len(CHANNELS)] += np.bincount(channel, weights=w, minlength=len(CHANNELS))

    def add_totals(self, metric: str, per_channel: np.ndarray) -> None:
        """Add a flow already totalled per channel (in channel order)."""
        self._today[_INDEX[metric], : len(CHANNELS)] += per_channel

    def add_fit_totals(self, fit_sum: np.ndarray, exposures: np.ndarray) -> None:
        """Add exposures' fit already totalled per channel, and their number."""
        self._fit_sum[: len(CHANNELS)] += fit_sum
        self._fit_n[: len(CHANNELS)] += exposures

    def set(self, metric: str, values) -> None:
        """Set a state metric for every column (channels, then all)."""
        self._today[_INDEX[metric]] = values

    def finish(self) -> None:
        t = self._today
        t[_INDEX["net_gmv"]] = t[_INDEX["gmv"]] - t[_INDEX["returned_value"]]
        t[_INDEX["brand_cost"]] = sum(t[_INDEX[k]] for k in COST_KINDS)
        for name in FLOW_METRICS:
            t[_INDEX[name], ALL_COL] = t[_INDEX[name], : len(CHANNELS)].sum()
        self._fit_sum[ALL_COL], self._fit_n[ALL_COL] = self._fit_sum.sum(), self._fit_n.sum()
        with np.errstate(invalid="ignore", divide="ignore"):
            t[_INDEX["fit"]] = np.where(self._fit_n > 0, self._fit_sum / self._fit_n, np.nan)
        self._rows.append(t)
        self._today = np.zeros((0, N_COLS))

    def frame(self) -> pd.DataFrame:
        """Tidy time series: columns day, channel, then one column per tick metric."""
        if not self._rows:
            return pd.DataFrame(columns=["day", "channel", *TICK_METRICS])
        cube = np.stack(self._rows)  # day x metric x channel
        days, _, cols = cube.shape
        data = cube.transpose(0, 2, 1).reshape(days * cols, -1)
        df = pd.DataFrame(data, columns=list(TICK_METRICS))
        df.insert(0, "channel", np.tile([*CHANNELS, ALL], days))
        df.insert(0, "day", np.repeat(np.arange(days), cols))
        return df

    def cube(self) -> np.ndarray:
        return np.stack(self._rows)


def gini(x: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0: equal; towards 1: one takes all).

    >>> gini(np.array([1.0, 1.0, 1.0]))
    0.0
    >>> round(gini(np.array([0.0, 0.0, 0.0, 1.0])), 2)
    0.75
    """
    x = np.sort(np.clip(np.asarray(x, dtype=float), 0, None))
    n = x.size
    if n == 0 or x.sum() == 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float((2 * i - n - 1) @ x / (n * x.sum()))


def repeat_purchase(
    consumer: np.ndarray, day: np.ndarray, last_day: int, window: int = FOLLOW_UP
) -> tuple[int, int]:
    """Repeat purchase on a cohort with full follow-up (T6).

    The cohort is the buyers whose first order came on or before ``last_day - window``, so
    every one of them was watched for ``window`` days; returns (cohort buyers who ordered again
    on a later day within ``window`` days of their first order, cohort size).

    >>> repeat_purchase(np.array([1, 1, 2, 2, 3]), np.array([0, 0, 5, 30, 50]), last_day=100)
    (1, 2)
    """
    if consumer.size == 0:
        return 0, 0
    order = np.lexsort((day, consumer))
    c, d = consumer[order], day[order]
    first = run_starts(c)
    first_day = d[first_of_run(c)]
    later = d > first_day  # days are sorted within a buyer: the later orders are a suffix
    first_later = later & ~np.r_[False, later[:-1] & ~first[1:]]
    cohort = first_day <= last_day - window
    repeat = first_later & (d - first_day <= window) & cohort
    return int(repeat.sum()), int((first & cohort).sum())


def summarise(
    recorder: TickRecorder,
    orders: Orders,
    n_consumers: int,
    owner_earnings: np.ndarray,
    apparel_product: np.ndarray,
) -> pd.DataFrame:
    """Run summary as a tidy DataFrame with columns channel, metric, value."""
    cube = recorder.cube()  # day x metric x column
    totals = cube.sum(axis=0)
    last = cube[-1]
    ch = orders["channel"]
    status = orders["status"]
    rows = []
    for col, name in enumerate([*CHANNELS, ALL]):
        mask = np.ones(ch.size, bool) if name == ALL else ch == col
        v = {m: totals[_INDEX[m], col] for m in FLOW_METRICS}
        reach_series = cube[:, _INDEX["reach"], col]
        reach = reach_series[-1]
        v["reach"] = reach
        v["reach_share"] = reach / n_consumers
        v["reach_day_half"] = (
            float(np.argmax(reach_series >= reach / 2)) if reach > 0 else float("nan")
        )
        buyers = np.unique(orders["consumer"][mask]).size
        v["buyers"] = buyers
        v["conversion"] = _ratio(v["orders"], v["exposures"])
        v["products_per_visit"] = _ratio(v["exposures"] - v["wom_exposures"], v["visits"])
        v["visit_conversion"] = _ratio(v["orders"] - v["wom_orders"], v["visits"])
        v["buyer_conversion"] = _ratio(buyers, reach)
        v["return_rate"] = _ratio(v["returns"], v["delivered"])
        v["defect_share"] = _ratio(v["defects"], v["delivered"])
        v["wom_share"] = _ratio(v["wom_orders"], v["orders"])
        v["resolution_rate"] = _ratio(v["resolved"], v["problems"])
        v["profit_per_net_rmb"] = _ratio(v["brand_profit"], v["net_gmv"])
        v["brands"] = last[_INDEX["brands"], col]
        done = mask & ((status == KEPT) | (status == RETURNED))
        apparel = done & apparel_product[orders["product"]]
        v["apparel_return_rate"] = _ratio((status[apparel] == RETURNED).sum(), apparel.sum())
        v["satisfaction"] = float(orders["satisfaction"][done].mean()) if done.any() else np.nan
        v["trust"] = last[_INDEX["trust"], col]
        rep, b = repeat_purchase(orders["consumer"][mask], orders["day"][mask], cube.shape[0] - 1)
        v["repeat_purchase_rate"] = _ratio(rep, b)
        v["profit_per_order"] = _ratio(v["brand_profit"], v["orders"])
        if name in (CHANNELS[Channel.OWNERS], ALL):
            v["active_owners"] = last[_INDEX["active_owners"], col]
            v["members"] = last[_INDEX["members"], col]
            v["owner_earnings_gini"] = (
                gini(owner_earnings) if owner_earnings.sum() > 0 else float("nan")
            )
        if name in (CHANNELS[Channel.STREAMER], ALL):
            v["followers"] = last[_INDEX["followers"], col]
            v["vetted_share"] = _ratio(v["vetted_slots"], v["slots"])
        if name == ALL:
            v["top_seller_share"] = _top_seller_share(orders)
        rows += [(name, metric, float(value)) for metric, value in v.items()]
    return pd.DataFrame(rows, columns=["channel", "metric", "value"])


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b else float("nan")


def _top_seller_share(orders: Orders) -> float:
    """Largest seller's share of GMV, among owners (each her own seller) and the streamer."""
    ch, paid = orders["channel"], orders["paid"]
    total = paid.sum()
    if total == 0:
        return float("nan")
    streamer = paid[ch == Channel.STREAMER].sum()
    own = ch == Channel.OWNERS
    by_owner = np.bincount(orders["owner"][own], weights=paid[own]) if own.any() else np.zeros(1)
    return float(max(streamer, by_owner.max()) / total)


if __name__ == "__main__":  # python -m sim.world.metrics: the ODD metric table
    print(metric_table())


def owner_survival(joined: np.ndarray, quit: np.ndarray, last_day: int) -> pd.DataFrame:
    """Kaplan-Meier survival of owners by tenure (days since joining).

    An owner who quit (``quit >= 0``) is an event at tenure ``quit - joined``; one still active
    is censored at ``last_day - joined``. Returns columns ``tenure`` and ``survival`` (share of
    owners still active at that tenure), starting at tenure 0 with survival 1.

    >>> owner_survival(np.array([0, 0, 0, 0]), np.array([5, -1, 10, -1]), 20).survival.tolist()
    [1.0, 0.75, 0.5]
    """
    active = quit < 0
    tenure = np.where(active, last_day - joined, quit - joined)
    times = np.unique(tenure[~active])
    survival, s = [1.0], 1.0
    for t in times:
        at_risk = (tenure >= t).sum()
        s *= 1.0 - ((tenure == t) & ~active).sum() / at_risk
        survival.append(float(s))
    return pd.DataFrame({"tenure": np.r_[0, times], "survival": survival})
