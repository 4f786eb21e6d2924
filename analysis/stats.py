"""Replicate statistics: means with confidence intervals, paired and unpaired differences.

All functions take the tidy summary table of an experiment (columns ``scenario``,
``replicate``, ``channel``, ``metric``, ``value``) and return tidy tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def mean_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and Student-t confidence interval of independent replicate values.

    NaN values are dropped; with fewer than two values the interval is NaN.

    >>> m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0]))
    >>> m, round(lo, 3), round(hi, 3)
    (2.0, -0.484, 4.484)
    """
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(x.mean())
    if x.size < 2:
        return m, float("nan"), float("nan")
    half = stats.t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / np.sqrt(x.size)
    return m, float(m - half), float(m + half)


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a share ``successes / n`` (Wilson 1927): honest at small
    ``n`` and at shares of 0 or 1, where the normal interval collapses to a point.

    >>> [round(v, 3) for v in wilson_interval(8, 8)]
    [0.676, 1.0]
    """
    if n == 0:
        return float("nan"), float("nan")
    z = stats.norm.ppf(0.5 + level / 2)
    share = successes / n
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def scenario_means(summary: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Mean and interval of every (scenario, channel, metric) over replicates."""
    rows = []
    for (sc, ch, me), g in summary.groupby(["scenario", "channel", "metric"], sort=False):
        m, lo, hi = mean_ci(g["value"].to_numpy(), level)
        rows.append((sc, ch, me, m, lo, hi, int(g["value"].notna().sum())))
    return pd.DataFrame(rows, columns=["scenario", "channel", "metric", "mean", "lo", "hi", "n"])


def paired_differences(summary: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Each scenario minus ``baseline``, replicate by replicate (common random numbers).

    The interval is a t interval of the per-replicate differences.
    """
    wide = summary.pivot_table(
        index=["channel", "metric", "replicate"], columns="scenario", values="value", dropna=False
    )
    rows = []
    for sc in [c for c in wide.columns if c != baseline]:
        diff = (wide[sc] - wide[baseline]).groupby(level=["channel", "metric"], sort=False)
        for (ch, me), d in diff:
            m, lo, hi = mean_ci(d.to_numpy(), level)
            rows.append((sc, baseline, ch, me, m, lo, hi, int(d.notna().sum())))
    return pd.DataFrame(
        rows, columns=["scenario", "baseline", "channel", "metric", "diff", "lo", "hi", "n"]
    )


def unpaired_differences(summary: pd.DataFrame, baseline: str, level: float = 0.95) -> pd.DataFrame:
    """Each scenario minus ``baseline`` treating replicates as independent (Welch interval).

    The right interval when the scenarios did not share random numbers; on paired runs it is
    wider than :func:`paired_differences`, which is what common random numbers buy.
    """
    rows = []
    base = summary[summary.scenario == baseline]
    for sc in [s for s in summary.scenario.unique() if s != baseline]:
        other = summary[summary.scenario == sc]
        for (ch, me), g in other.groupby(["channel", "metric"], sort=False):
            a = g["value"].dropna().to_numpy()
            b = base[(base.channel == ch) & (base.metric == me)]["value"].dropna().to_numpy()
            if a.size < 2 or b.size < 2:
                rows.append((sc, baseline, ch, me, np.nan, np.nan, np.nan))
                continue
            va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
            se = np.sqrt(va + vb)
            dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1)) if se > 0 else 1
            half = stats.t.ppf(0.5 + level / 2, dof) * se
            d = a.mean() - b.mean()
            rows.append((sc, baseline, ch, me, d, d - half, d + half))
    return pd.DataFrame(
        rows, columns=["scenario", "baseline", "channel", "metric", "diff", "lo", "hi"]
    )


def channel_presence(table: pd.DataFrame) -> pd.Series:
    """Was each channel there in each scenario? (It exposed anyone: a channel switched off in a
    scenario did not.) Takes an experiment's summary or time series; a boolean Series indexed
    by (scenario, channel)."""
    if "metric" in table.columns:
        exposures = table[table.metric == "exposures"].groupby(["scenario", "channel"])["value"]
    else:
        exposures = table.groupby(["scenario", "channel"])["exposures"]
    return exposures.sum() > 0


def channels_present(table: pd.DataFrame) -> list[str]:
    """The sales channels (not ``all``) present in at least one scenario, in channel order."""
    from sim.world.channels import CHANNELS

    presence = channel_presence(table)
    return [c for c in CHANNELS if presence.xs(c, level="channel").any()]
