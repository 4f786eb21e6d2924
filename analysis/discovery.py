"""Scenario discovery: in which region of the sweep's parameters one channel beats another.

For a sweep (:mod:`sim.experiments.sweep`), each point is a case: its parameter values are the
inputs, and whether the streamer beats the owners on a metric (``better`` as the metric
declares, :data:`sim.world.metrics.METRICS`) is the case of interest. PRIM, the Patient Rule
Induction Method (Friedman & Fisher 1999), peels the parameter space down to a box where the
cases of interest are dense, as scenario discovery uses it (Bryant & Lempert 2010); the
implementation is EMA Workbench's (Kwakkel 2017).

A box is read by two numbers: **coverage**, the share of all cases of interest inside the box,
and **density**, the share of the box's points that are cases of interest. Peeling trades one
for the other; :func:`find_box` picks the densest box that still covers at least
``min_coverage`` of the cases (the fewest restricted parameters among equals), a common
reading of the trade-off.

References: Friedman, J. H. & Fisher, N. I. (1999) Bump hunting in high-dimensional data.
Statistics and Computing 9, 123-143. Bryant, B. P. & Lempert, R. J. (2010) Thinking inside
the box. Technological Forecasting and Social Change 77, 34-49. Kwakkel, J. H. (2017) The
Exploratory Modeling Workbench. Environmental Modelling & Software 96, 239-250.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sim.world.metrics import METRICS


@dataclass
class Box:
    """A PRIM box: the peeling trajectory, the chosen step and its limits."""

    trajectory: pd.DataFrame  # coverage, density, mass, res_dim per peeling step
    chosen: int  # the step picked (a row of trajectory)
    limits: pd.DataFrame  # parameter, low, high, restricted

    @property
    def coverage(self) -> float:
        return float(self.trajectory.coverage.iloc[self.chosen])

    @property
    def density(self) -> float:
        return float(self.trajectory.density.iloc[self.chosen])

    @property
    def restricted(self) -> pd.DataFrame:
        return self.limits[self.limits.restricted]


def find_box(x: pd.DataFrame, y: np.ndarray, min_coverage: float = 0.8) -> Box:
    """PRIM on numeric inputs ``x`` (one row per case) and the boolean ``y`` (case of
    interest); returns the densest box with coverage >= ``min_coverage``.

    >>> rng = np.random.default_rng(1)
    >>> x = pd.DataFrame({"a": rng.uniform(0, 1, 2000), "b": rng.uniform(0, 1, 2000)})
    >>> box = find_box(x, (x.a > 0.6).to_numpy())
    >>> box.restricted.parameter.tolist(), round(float(box.restricted.low.iloc[0]), 1)
    (['a'], 0.6)
    """
    y = np.asarray(y, dtype=bool)
    if not 0 < y.sum() < len(y):
        raise ValueError("PRIM needs cases of interest and others: y is all one value")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "ipyparallel not installed" and the like
        from ema_workbench.analysis import prim

        found = prim.Prim(x.reset_index(drop=True), y).find_box()
    trajectory = found.peeling_trajectory.reset_index(drop=True)
    ok = trajectory[trajectory.coverage >= min_coverage]
    best = ok[ok.density == ok.density.max()]
    chosen = int(best.sort_values(["res_dim", "coverage"], ascending=[True, False]).index[0])
    first, lims = found.box_lims[0], found.box_lims[chosen]
    limits = pd.DataFrame(
        {
            "parameter": list(x.columns),
            "low": [float(lims[c].iloc[0]) for c in x.columns],
            "high": [float(lims[c].iloc[1]) for c in x.columns],
            "restricted": [
                bool(lims[c].iloc[0] > first[c].iloc[0] or lims[c].iloc[1] < first[c].iloc[1])
                for c in x.columns
            ],
        }
    )
    return Box(trajectory[["coverage", "density", "mass", "res_dim"]], chosen, limits)


@dataclass
class Discovery:
    """Where ``winner`` beats ``loser`` on ``metric`` across a sweep's points."""

    metric: str
    winner: str
    loser: str
    points: int
    wins: int
    box: Box | None  # None when the winner wins everywhere or nowhere

    @property
    def share(self) -> float:
        return self.wins / self.points if self.points else float("nan")


def cases(
    means: pd.DataFrame,
    manifest: dict[str, Any],
    metric: str,
    winner: str = "streamer",
    loser: str = "owners",
) -> tuple[pd.DataFrame, np.ndarray]:
    """The numeric factors of each point (``x``) and whether ``winner`` beats ``loser`` on
    ``metric`` there (``y``); points where either value is missing are left out. ``means``:
    :func:`analysis.sensitivity.point_means`."""
    better = METRICS[metric].better if metric in METRICS else "higher"
    if better not in ("higher", "lower"):
        raise ValueError(f"{metric}: neither higher nor lower is better, so nobody 'wins'")
    part = means[(means.metric == metric) & means.channel.isin([winner, loser])]
    names = [  # numeric factors: ranges and lists of numbers (not switches or names)
        f["name"]
        for f in manifest["factors"]
        if pd.api.types.is_numeric_dtype(part[f["name"]])
        and not pd.api.types.is_bool_dtype(part[f["name"]])
    ]
    wide = part.pivot_table(index="point_id", columns="channel", values="value").dropna()
    if winner not in wide or loser not in wide:
        return pd.DataFrame(columns=names), np.zeros(0, dtype=bool)
    x = part.drop_duplicates("point_id").set_index("point_id").loc[wide.index, names]
    diff = wide[winner] - wide[loser]
    y = (diff > 0) if better == "higher" else (diff < 0)
    return x.astype(float), y.to_numpy()


def discover(
    means: pd.DataFrame,
    manifest: dict[str, Any],
    metric: str,
    winner: str = "streamer",
    loser: str = "owners",
    min_coverage: float = 0.8,
    min_wins: int = 10,
) -> Discovery:
    """Scenario discovery for one metric: how often ``winner`` beats ``loser``, and the PRIM
    box of the parameters where it does (:func:`find_box`); no box around fewer than
    ``min_wins`` wins (or losses): PRIM would fit noise."""
    x, y = cases(means, manifest, metric, winner, loser)
    box = None
    if len(y) and min_wins <= y.sum() <= len(y) - min_wins and len(x.columns):
        box = find_box(x, y, min_coverage)
    return Discovery(metric, winner, loser, len(y), int(y.sum()), box)


def describe(d: Discovery) -> str:
    """One paragraph of Markdown: the share of wins and the box."""
    head = (
        f"**{d.metric}**: the {d.winner} beats the {d.loser} at {d.wins} of {d.points} points "
        f"({d.share:.0%})"
    )
    if d.box is None:
        if 0 < d.wins < d.points:
            return head + ": too few of either to draw a region."
        return head + ": no region to find (everywhere or nowhere)."
    rules = [
        f"`{r.parameter}` in [{r.low:.3g}, {r.high:.3g}]" for r in d.box.restricted.itertuples()
    ]
    return (
        head
        + f". PRIM box (coverage {d.box.coverage:.0%}, density {d.box.density:.0%}): "
        + (", ".join(rules) if rules else "no parameter restricted")
        + "."
    )


def trajectory_figure(d: Discovery) -> Figure:
    """PRIM's peeling trajectory, density against coverage coloured by the number of restricted
    parameters; the chosen box ringed."""
    assert d.box is not None
    t = d.box.trajectory
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    points = ax.scatter(t.coverage, t.density, c=t.res_dim, cmap="viridis", s=22)
    c = t.iloc[d.box.chosen]
    ax.scatter([c.coverage], [c.density], s=160, facecolors="none", edgecolors="red", lw=1.5)
    ax.set_xlabel("coverage")
    ax.set_ylabel("density")
    ax.set_title(f"Where the {d.winner} beats the {d.loser}: {d.metric}", fontsize=10)
    fig.colorbar(points, ax=ax, label="parameters restricted")
    fig.tight_layout()
    return fig
