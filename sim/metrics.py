"""Declared outputs: the per-tick time series and the per-run summary, split by channel.

Every metric is declared once in :data:`TICK_METRICS` or :data:`SUMMARY_METRICS` with its
meaning; the model fills a :class:`TickRecorder` each day and :func:`summarise` derives the run
summary from the recorder and the order book. Both come back as tidy pandas DataFrames: the time
series has one row per (day, channel), the summary one row per (channel, metric). Channels are
``owners``, ``streamer``, ``conventional`` and their total ``all``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.channels import ALL, CHANNELS, Channel
from sim.orders import KEPT, RETURNED, Orders
from sim.ragged import first_of_run, run_starts

# Flow metrics add up across channels; the "all" column of a flow is the sum of the channels.
FLOW_METRICS: dict[str, str] = {
    "visits": "a consumer's visit to a channel: a group post opened, a session watched, a search",
    "exposures": "product exposures (one consumer seeing one product once)",
    "orders": "orders placed",
    "wom_exposures": "exposures by a friend's forward (word of mouth)",
    "wom_orders": "orders placed after a friend's forward",
    "gmv": "value of orders placed, at the price paid (RMB)",
    "delivered": "orders delivered",
    "returns": "orders returned (decided at delivery)",
    "returned_value": "price paid of returned orders, refunded (RMB)",
    "net_gmv": "gmv minus returned value (RMB)",
    "commission": "commission the brand pays the seller, net of returned orders (RMB)",
    "slot_fee": "streamer slot fees (RMB)",
    "discount": "list price minus price paid, net of returned orders (RMB)",
    "reverse_logistics": "cost of handling returns (RMB)",
    "write_off": "cost of goods of returned defective items (RMB)",
    "ads": "search and ad spend (RMB)",
    "brand_cost": "commission + slot fee + discount + reverse logistics + write-off + ads (RMB)",
    "brand_profit": "list value kept - cost of goods kept - brand cost (RMB)",
    "seller_earnings": "what owners (owners channel) or the streamer earn: commission + fees",
}

# What a brand pays, by kind; brand_cost is their sum.
COST_KINDS = ("commission", "slot_fee", "discount", "reverse_logistics", "write_off", "ads")

# State metrics are read, not summed: reach is a union, trust and satisfaction are means.
STATE_METRICS: dict[str, str] = {
    "reach": "unique consumers exposed so far (cumulative)",
    "buyers": "unique consumers ordering today",
    "satisfaction": "mean satisfaction with orders delivered today",
    "fit": "mean expected fit of today's exposures",
    "trust": "mean trust in the channel's own source: members in their owner, followers in the "
    "streamer, everyone in search; for 'all', in friends",
    "active_owners": "owners still active (owners and all rows)",
    "followers": "streamer followers (streamer and all rows)",
}

TICK_METRICS: dict[str, str] = {**FLOW_METRICS, **STATE_METRICS}

SUMMARY_METRICS: dict[str, str] = {
    **{k: f"total over the run: {v}" for k, v in FLOW_METRICS.items()},
    "reach": "unique consumers exposed over the run",
    "reach_share": "reach / consumers",
    "reach_day_half": "first day reach passed half its final value (speed of reach)",
    "buyers": "unique consumers who ordered over the run",
    "conversion": "orders / exposures",
    "visit_conversion": "orders placed on a visit (not after a friend's forward) / visits; for "
    "the streamer, orders per viewer-session",
    "buyer_conversion": "buyers / reach",
    "return_rate": "returns / delivered orders",
    "apparel_return_rate": "returns / delivered orders, apparel-like products only",
    "satisfaction": "mean satisfaction over delivered orders",
    "trust": "trust at the end of the run (see the time series)",
    "repeat_purchase_rate": "buyers ordering again on a later day within 90 days / buyers",
    "profit_per_order": "brand profit / orders placed",
    "active_owners": "owners active at the end",
    "followers": "streamer followers at the end",
    "owner_earnings_gini": "Gini coefficient of owners' total earnings (all owners)",
    "monthly_buyer_conversion": "consumers ordering in a 30-day window / consumers reached in "
    "it, over completed windows (a run shorter than 30 days: its one window; T5 for owners)",
    "owner_sales_per_member_month_median": "median over owners of sales through her links per "
    "group member (at the start) per month (RMB, T7)",
    "owner_sales_per_member_month_p99": "99th percentile of the same (the top 1% of owners)",
    "top_seller_share": "largest single seller's share of GMV (owners and the streamer)",
}

_INDEX = {name: i for i, name in enumerate(TICK_METRICS)}
N_COLS = len(CHANNELS) + 1  # channels, then all
ALL_COL = len(CHANNELS)


class TickRecorder:
    """Accumulates one (metric x channel) matrix per tick."""

    def __init__(self) -> None:
        self._rows: list[np.ndarray] = []
        self._today: np.ndarray | None = None

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

    def add_fit(self, channel: np.ndarray, fit: np.ndarray) -> None:
        self._fit_sum[: len(CHANNELS)] += np.bincount(channel, weights=fit, minlength=len(CHANNELS))
        self._fit_n[: len(CHANNELS)] += np.bincount(channel, minlength=len(CHANNELS))

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
        self._today = None

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


def repeat_purchase(consumer: np.ndarray, day: np.ndarray, window: int = 90) -> tuple[int, int]:
    """(buyers who ordered again on a later day within ``window`` days of their first, buyers).

    >>> repeat_purchase(np.array([1, 1, 2, 2]), np.array([0, 0, 5, 30]))
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
    repeat = first_later & (d - first_day <= window)
    return int(repeat.sum()), int(first.sum())


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
        v["visit_conversion"] = _ratio(v["orders"] - v["wom_orders"], v["visits"])
        v["buyer_conversion"] = _ratio(buyers, reach)
        v["return_rate"] = _ratio(v["returns"], v["delivered"])
        done = mask & ((status == KEPT) | (status == RETURNED))
        apparel = done & apparel_product[orders["product"]]
        v["apparel_return_rate"] = _ratio((status[apparel] == RETURNED).sum(), apparel.sum())
        v["satisfaction"] = float(orders["satisfaction"][done].mean()) if done.any() else np.nan
        v["trust"] = last[_INDEX["trust"], col]
        rep, b = repeat_purchase(orders["consumer"][mask], orders["day"][mask])
        v["repeat_purchase_rate"] = _ratio(rep, b)
        v["profit_per_order"] = _ratio(v["brand_profit"], v["orders"])
        if name in (CHANNELS[Channel.OWNERS], ALL):
            v["active_owners"] = last[_INDEX["active_owners"], col]
            v["owner_earnings_gini"] = (
                gini(owner_earnings) if owner_earnings.sum() > 0 else float("nan")
            )
        if name in (CHANNELS[Channel.STREAMER], ALL):
            v["followers"] = last[_INDEX["followers"], col]
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
