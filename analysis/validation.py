"""The validation report (``fishschool validate-model``, written to docs/VALIDATION.md).

It reruns, at a chosen size, everything a reviewer needs to trust the model:

1. docking: the word of mouth against the exact Independent Cascade on a small graph and a
   reference IC on a generated graph; well-mixed adoption against the closed-form Bass curve;
2. direction checks: each lever or driver moves its metric the way the mechanism says;
3. patterns: each calibration target of the brief against the simulated mean and its 95%
   interval at the default parameters;
4. the owners-versus-streamer verdict under the least certain parameters: each set to the low
   and high end of its accepted range (or prior), does the verdict still hold?

The tests regenerate it at a small size (``--size small``) so that it never goes stale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.stats import mean_ci
from sim import __version__
from sim.experiments.calibration import default_setup, pattern_values, smaller_world
from sim.experiments.experiment import run_experiment
from sim.experiments.scenario import default
from sim.experiments.verification import (
    HOUSE,
    bass_curve,
    exact_ic_distribution,
    hub_component,
    model_bass_adoption,
    model_ic_reach,
    model_ic_reach_on_graph,
    reference_ic_reach,
)
from sim.world.graph import community_graph

HEADING = "# Validation report"  # the report's first line: what --out may replace


@dataclass(frozen=True)
class Size:
    consumers: int
    replicates: int
    ic_copies: int
    bass_consumers: int
    days: int


SIZES = {
    "small": Size(consumers=5000, replicates=3, ic_copies=3000, bass_consumers=5000, days=60),
    "full": Size(consumers=20_000, replicates=8, ic_copies=20_000, bass_consumers=20_000, days=120),
}

# (what, lever, low, high, channel, metric, expected sign of high - low)
DIRECTIONS = (
    (
        "stricter selection lowers owners' returns",
        "platform.selection_strictness",
        0.0,
        0.8,
        "owners",
        "return_rate",
        -1,
    ),
    (
        "more hype raises streamer conversion",
        "hype.live",
        0.2,
        2.0,
        "streamer",
        "visit_conversion",
        +1,
    ),
    ("more hype raises streamer returns", "hype.live", 0.2, 2.0, "streamer", "return_rate", +1),
    (
        "more 2b live raises owners' fit of picks",
        "platform.live_2b_per_week",
        0.0,
        7.0,
        "owners",
        "fit",
        +1,
    ),
    (
        "more trust in owners raises owners' conversion",
        "consumers.trust_owner",
        0.2,
        0.9,
        "owners",
        "conversion",
        +1,
    ),
    (
        "more after-sales capacity lowers owners' returns",
        "after_sales.platform_capacity",
        0.0,
        500.0,
        "owners",
        "return_rate",
        -1,
    ),
)

VERDICTS = (
    ("owners return less than the streamer", "return_rate", -1),
    ("owners earn brands more per order", "profit_per_order", +1),
    ("owners' buyers are more satisfied", "satisfaction", +1),
)


def _world(size: Size, *sets: str):
    return [
        *smaller_world(size.consumers, size.days),
        f"replicates={size.replicates}",
        *sets,
    ]


def direction_value(
    summary: pd.DataFrame, timeseries: pd.DataFrame, channel: str, metric: str
) -> float:
    """The number a direction check compares: the summary metric of the channel (mean over
    replicates), or for ``fit``, a daily diagnostic, the mean over days of the day's mean
    expected fit of the channel's exposures (each day weighs the same)."""
    if metric == "fit":
        return float(np.nanmean(timeseries[timeseries.channel == channel]["fit"]))
    part = summary[(summary.channel == channel) & (summary.metric == metric)]
    return float(np.nanmean(part.value.to_numpy()))


def docking(size: Size) -> list[dict]:
    rows = []
    p = 0.4
    sizes = model_ic_reach(HOUSE, 5, p, size.ic_copies)
    exact = exact_ic_distribution(HOUSE, 5, 0, p)
    obs = np.bincount(sizes, minlength=6)[1:]
    chi = stats.chisquare(obs, exact * obs.sum())
    rows.append(
        {
            "check": "IC, house graph (5 nodes), p = 0.4: reach distribution, model vs exact",
            "result": f"mean {sizes.mean():.3f} vs {(np.arange(1, 6) * exact).sum():.3f}; "
            f"chi-square p = {chi.pvalue:.3f}",
            "passed": bool(chi.pvalue > 0.001),
        }
    )
    adj = hub_component(community_graph(300, 6, 50, 0.2, 0.6, 0.3, np.random.default_rng(2))[0])
    m = model_ic_reach_on_graph(adj, 0.15, size.ic_copies // 4, seed=1)
    r = reference_ic_reach(adj, 0.15, size.ic_copies // 4, seed=2)
    se = math.sqrt(m.var() / m.size + r.var() / r.size)
    ks = stats.ks_2samp(m, r).pvalue
    rows.append(
        {
            "check": f"IC on a generated clustered graph ({adj.shape[0]} nodes), p = 0.15: "
            "model vs plain reference IC",
            "result": f"mean reach {m.mean():.2f} vs {r.mean():.2f} (se {se:.2f}); KS p = {ks:.3f}",
            "passed": bool(abs(m.mean() - r.mean()) < 4 * se and ks > 0.001),
        }
    )
    scale, years = 26, 12
    bp, bq = 0.03 / scale, 0.38 / scale
    days = scale * years
    adopted = model_bass_adoption(size.bass_consumers, bp, bq, days, replicates=4)
    gap = float(np.abs(adopted - bass_curve(np.arange(1, days + 1), bp, bq)).max())
    tolerance = 0.015 if size.bass_consumers >= 20_000 else 0.03
    rows.append(
        {
            "check": "Bass, well mixed, p = 0.03 and q = 0.38 a year at 1/26 year a tick: "
            "adoption curve vs closed form",
            "result": f"largest gap {gap:.4f} (tolerance {tolerance})",
            "passed": gap < tolerance,
        }
    )
    return rows


def directions(size: Size) -> list[dict]:
    rows = []
    for what, lever, low, high, channel, metric, sign in DIRECTIONS:
        values = []
        for v in (low, high):
            s = default(_world(size, f"{lever}={v}"))
            exp = run_experiment([s], workers=1)
            values.append(direction_value(exp.summary, exp.timeseries, channel, metric))
        ok = (values[1] - values[0]) * sign > 0
        rows.append(
            {
                "check": what,
                "lever": f"{lever}: {low} -> {high}",
                "result": f"{channel} {metric}: {values[0]:.4g} -> {values[1]:.4g}",
                "passed": bool(ok),
            }
        )
    rows.append(_removal_check(size))
    return rows


def _removal_check(size: Size) -> dict:
    """Removing the streamer drops her channel's orders to zero from that day on (T8)."""
    day = size.days // 3
    s = default(_world(size, f"events.streamer_removed_day={day}"))
    ts = run_experiment([s], workers=1).timeseries
    streamer = ts[ts.channel == "streamer"]
    before = streamer[streamer.day < day].orders.sum()
    after = streamer[streamer.day >= day].orders.sum()
    return {
        "check": "removing the streamer stops her channel from that day",
        "lever": f"events.streamer_removed_day: none -> {day}",
        "result": f"streamer orders before {before:.0f}, from day {day} on {after:.0f}",
        "passed": bool(before > 0 and after == 0),
    }


def patterns(size: Size) -> tuple[list[dict], pd.DataFrame]:
    s = default(_world(size))
    exp = run_experiment([s], workers=1)
    summary = exp.summary
    values = pattern_values(summary.assign(point_id=summary.replicate))
    rows = []
    for t in default_setup().targets:
        m, lo, hi = mean_ci(values[t.id].to_numpy())
        rows.append(
            {
                "id": t.id,
                "pattern": t.pattern,
                "target": f"{t.low:g}-{t.high:g}",
                "simulated": f"{m:.3g} [{lo:.3g}, {hi:.3g}]",
                "inside": bool(t.low <= m <= t.high),
                "source": t.source,
            }
        )
    return rows, exp.summary


def verdict_sensitivity(size: Size, posterior: pd.DataFrame | None, top: int = 4) -> list[dict]:
    """The verdict under the least certain parameters, each at both ends of its range."""
    if posterior is not None:
        width = (posterior.q95 - posterior.q05) / (posterior.prior_high - posterior.prior_low)
        ranked = posterior.assign(width=width).sort_values("width", ascending=False)
        ranges = {r.parameter: (r.q05, r.q95) for r in ranked.head(top).itertuples()}
    else:
        ranges = dict(list(default_setup().priors.items())[:top])
    rows = []
    for name, (lo, hi) in ranges.items():
        for label, v in (("low", lo), ("high", hi)):
            v = int(round(v)) if name == "streamer.products_seen" else round(float(v), 4)
            s = default(_world(size, f"{name}={v}"))
            sm = run_experiment([s], workers=1).summary
            cells = {}
            for what, metric, sign in VERDICTS:
                own = sm[(sm.channel == "owners") & (sm.metric == metric)].value.mean()
                st = sm[(sm.channel == "streamer") & (sm.metric == metric)].value.mean()
                cells[what] = bool((own - st) * sign > 0)
            rows.append({"parameter": name, "end": f"{label} ({v})", **cells})
    return rows


def _table(rows: list[dict]) -> str:
    if not rows:
        return "(none)"
    cols = list(rows[0])
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            cells.append(("yes" if v else "**no**") if isinstance(v, bool) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def write_report(
    path: str | Path, size_name: str = "full", posterior: str | Path | None = None
) -> Path:
    """Run every check at the given size and write the Markdown report to ``path``."""
    size = SIZES[size_name]
    post = pd.read_csv(posterior) if posterior and Path(posterior).is_file() else None
    dock = docking(size)
    dirs = directions(size)
    pats, _ = patterns(size)
    sens = verdict_sensitivity(size, post)
    passed = sum(r["passed"] for r in dock + dirs)
    total = len(dock) + len(dirs)
    inside = sum(r["inside"] for r in pats)
    text = f"""{HEADING}

Generated by `fishschool validate-model --size {size_name}` (fishschool {__version__},
{datetime.now(UTC).date()}): {size.consumers:,} consumers, {size.days} days,
{size.replicates} replicates per setting. Docking and direction checks: **{passed} of {total}
passed**. Patterns: **{inside} of {len(pats)}** targets met at the defaults.

## 1. Docking (Rand & Rust 2011)

The model's word of mouth, with purchase certain and trust constant, is the Independent Cascade
(Kempe, Kleinberg & Tardos 2003); configured as well-mixed adoption, it is the Bass model.

{_table(dock)}

## 2. Direction checks

Each lever moved from low to high, all else at the defaults, means over replicates.

{_table(dirs)}

## 3. Patterns of the brief at the default parameters

Mean over replicates [95% interval]; definitions in docs/ODD.md section 1.2. The owners' low
return rate has no target: the article only claims it, so it is reported, not calibrated.

{_table(pats)}

## 4. Does the owners-versus-streamer verdict survive the least certain parameters?

The parameters with the widest accepted ranges in the calibration
({"docs/calibration/posterior.csv" if post is not None else "the priors, no calibration given"}),
each set to the low and the high end of that range, all else at the defaults. "yes": the
verdict holds.

{_table(sens)}
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def check_destination(out: str | Path) -> Path:
    """Where the report may go: a writable path that is new or holds an earlier report (its
    first line is :data:`HEADING`), never any other file."""
    from sim.experiments.output import OutputExistsError, check_writable

    out = check_writable(out, folder=False)
    if out.is_file():
        try:
            with out.open(encoding="utf-8") as fh:
                ours = fh.readline().strip() == HEADING
        except (OSError, UnicodeDecodeError):
            ours = False
        if not ours:
            raise OutputExistsError(
                f"--out {out}: exists and is not a validation report of fishschool "
                f"(it does not begin with '{HEADING}'): choose another --out"
            )
    return out
