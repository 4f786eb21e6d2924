"""The validation report (``fishschool validate-model``, written to docs/VALIDATION.md).

It reruns, at a chosen size, everything a reviewer needs to trust the model:

1. docking: the word of mouth against the exact Independent Cascade on a small graph and a
   reference IC on a generated graph; well-mixed adoption against the closed-form Bass curve;
2. direction checks: each lever or driver moves its metric the way the mechanism says;
3. patterns: each calibration target of the brief against the simulated mean and its 95%
   interval at the default parameters;
4. the calibration on record: posterior predictive coverage per target and the scale check;
5. the owners-versus-streamer verdict with each replicate's parameters drawn from the
   posterior: how often the owners come out ahead on each metric;
6. scenario discovery (PRIM) on the shipped verdict sweep: where the streamer wins.

The tests regenerate it at a small size (``--size small``) so that it never goes stale.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis.discovery import describe, discover
from analysis.report import channel_duel, distinct_draws
from analysis.sensitivity import STRATEGIES, point_means
from analysis.sensitivity import load as load_sweep_data
from analysis.stats import mean_ci
from sim import __version__
from sim.experiments import atomic
from sim.experiments.calibration import (
    default_setup,
    docs_folder,
    inside,
    load_posterior_samples,
    pattern_values,
    smaller_world,
)
from sim.experiments.engine import executor_for
from sim.experiments.experiment import run_experiment
from sim.experiments.scenario import default, load, shipped_dir
from sim.experiments.sweep import count_runs, load_sweep, run_sweep
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
from sim.world.metrics import METRICS
from sim.world.params import field_of

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


def directions(size: Size, workers: int = 1) -> list[dict]:
    rows = []
    for what, lever, low, high, channel, metric, sign in DIRECTIONS:
        values = []
        for v in (low, high):
            s = default(_world(size, f"{lever}={v}"))
            exp = run_experiment([s], workers=workers)
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
    rows.append(_removal_check(size, workers))
    return rows


def _removal_check(size: Size, workers: int = 1) -> dict:
    """Removing the streamer drops her channel's orders to zero from that day on (T8)."""
    day = size.days // 3
    s = default(_world(size, f"events.streamer_removed_day={day}"))
    ts = run_experiment([s], workers=workers).timeseries
    streamer = ts[ts.channel == "streamer"]
    before = streamer[streamer.day < day].orders.sum()
    after = streamer[streamer.day >= day].orders.sum()
    return {
        "check": "removing the streamer stops her channel from that day",
        "lever": f"events.streamer_removed_day: none -> {day}",
        "result": f"streamer orders before {before:.0f}, from day {day} on {after:.0f}",
        "passed": bool(before > 0 and after == 0),
    }


def patterns(size: Size, workers: int = 1) -> tuple[list[dict], pd.DataFrame]:
    s = default(_world(size))
    exp = run_experiment([s], workers=workers)
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


def calibration_summary(folder: Path) -> tuple[list[dict], list[dict], str]:
    """The calibration on record (``fishschool calibrate`` output in ``folder``): predictive
    coverage per target, the scale check, and one line on the run."""
    targets = default_setup().targets
    pred = pd.read_csv(folder / "predictive.csv")
    gens = pd.read_csv(folder / "generations.csv")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    # The calibration's own coverage (a draw that cannot measure a pattern misses it), when
    # it wrote one; else the same rule here.
    shares = (
        pd.read_csv(folder / "coverage.csv").set_index("target").coverage.to_dict()
        if (folder / "coverage.csv").is_file()
        else inside(pred).mean().to_dict()
    )
    coverage = []
    for t in targets:
        v = pred[t.id].dropna()
        share = shares[t.id]
        coverage.append(
            {
                "id": t.id,
                "pattern": t.pattern,
                "target": f"{t.low:g}-{t.high:g}",
                "predictive 5%-95%": f"{v.quantile(0.05):.3g}-{v.quantile(0.95):.3g}",
                "median": f"{v.median():.3g}",
                "coverage": f"{share:.0%}",
                "met": share >= 0.5,
            }
        )
    scale = []
    if (folder / "scale.csv").is_file():
        scale = [
            {
                "id": r.target,
                "calibration size": f"{r.small:.3g}"
                + (f" +/- {r.small_se:.2g}" if "small_se" in r._fields else ""),
                "100,000 consumers": f"{r.large:.3g}"
                + (f" +/- {r.large_se:.2g}" if "large_se" in r._fields else ""),
                "ratio": f"{r.ratio:.2f}",
                "agrees": ("yes" if r.agrees else "**no**") if "agrees" in r._fields else "",
            }
            for r in pd.read_csv(folder / "scale.csv").itertuples()
        ]
    ess = (
        ""
        if "effective_sample_size" not in gens
        else (
            f", effective sample size {gens.effective_sample_size.iloc[-1]:.0f} of "
            f"{manifest['population']}"
        )
    )
    simulated = manifest.get("simulations") or int(gens.samples.sum())
    line = (
        f"ABC-SMC, {len(gens)} generations of {manifest['population']} particles "
        f"({simulated:,} simulated, {manifest['replicates']} replicates each, "
        f"{manifest['world']['consumers']:,} consumers, {manifest['world']['days']} days), "
        f"final tolerance {gens.epsilon.iloc[-1]:.2f}{ess}"
    )
    return coverage, scale, line


def defaults_against_posterior(folder: Path) -> str:
    """Whether the shipped defaults are the calibration's posterior median, in words (checked,
    not assumed: a default set by hand after the calibration shows here)."""
    post = pd.read_csv(folder / "posterior.csv")
    differ = []
    for r in post.itertuples():
        default_value = field_of(r.parameter).default
        if not math.isclose(float(default_value), float(r.median), rel_tol=1e-4, abs_tol=1e-6):
            differ.append(f"`{r.parameter}` ({default_value:g}, median {r.median:.4g})")
    if not differ:
        return "the defaults are its posterior median"
    return "the defaults differ from its posterior median in " + ", ".join(differ)


VERDICT_METRICS = (
    "reach_share",
    "conversion",
    "visit_conversion",
    "monthly_buyer_conversion",
    "return_rate",
    "resolution_rate",
    "net_gmv",
    "brand_profit",
    "profit_per_net_rmb",
    "satisfaction",
    "repeat_purchase_rate",
)


def verdict_across_posterior(
    size: Size, samples: pd.DataFrame | None, workers: int = 1
) -> tuple[list[dict], int]:
    """Owners against the streamer (the shipped scenarios at this size) with every replicate's
    uncertain parameters drawn from the posterior (:func:`run_experiment`'s ``posterior``;
    without one, at the defaults): how often the owners come out ahead, draw by draw, with
    the share's 95% Wilson interval. Also returns how many distinct particles were drawn."""
    scenarios = [load(name, smaller_world(size.consumers, size.days)) for name in STRATEGIES]
    exp = run_experiment(scenarios, replicates=size.replicates, workers=workers, posterior=samples)
    duel = channel_duel(exp.summary, VERDICT_METRICS)
    rows = [
        {
            "metric": r.metric,
            "better": r.better,
            "draws": r.replicates,
            "owners ahead": f"{r.win_share:.0%} [{r.low:.0%}, {r.high:.0%}]",
        }
        for r in duel.itertuples()
    ]
    return rows, distinct_draws(exp.draws) if exp.draws else 0


def discovery(size: Size, workers: int = 1) -> tuple[list[str], str]:
    """Scenario discovery (PRIM) on the shipped verdict sweep, run at this size: where in the
    remaining declared constants does the streamer beat the owners?"""
    path = shipped_dir() / "sweeps" / "verdict_under_uncertainty.toml"
    sweep = load_sweep(path)
    if size.consumers < sweep.base.params.world.consumers:  # the tests' small report
        sweep = dataclasses.replace(
            load_sweep(path, smaller_world(size.consumers, size.days)), samples=8
        )
    with tempfile.TemporaryDirectory() as tmp, executor_for(workers) as (executor, _):
        run_sweep(sweep, tmp, executor)
        data, manifest = load_sweep_data(tmp)
        means = point_means(data, manifest)
        found = [
            discover(means, manifest, m)
            for m in sweep.metrics
            if METRICS[m].better in ("higher", "lower")
        ]
    runs = count_runs(sweep)
    return [describe(d) for d in found], (
        f"`{sweep.path.name}`: {runs} runs ({sweep.base.params.world.consumers:,} consumers, "
        f"{sweep.base.params.world.days} days)"
    )


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
    path: str | Path,
    size_name: str = "full",
    calibration: str | Path | None = None,
    workers: int = 1,
) -> Path:
    """Run every check at the given size and write the Markdown report to ``path``.

    ``calibration``: a ``fishschool calibrate`` folder (default ``docs/calibration``): its
    predictive coverage and scale check are reported, and its posterior samples drive the
    verdict across the posterior; without one, the verdict uses the defaults only.
    """
    size = SIZES[size_name]
    folder = Path(calibration) if calibration is not None else docs_folder()
    has_posterior = (folder / "posterior_samples.csv").is_file()
    shown = "docs/calibration" if folder.resolve() == docs_folder() else folder.as_posix()
    calibrated_consumers = (
        json.loads((folder / "manifest.json").read_text(encoding="utf-8"))["world"]["consumers"]
        if has_posterior and (folder / "manifest.json").is_file()
        else 0
    )
    dock = docking(size)
    dirs = directions(size, workers)
    pats, _ = patterns(size, workers)
    coverage, scale, line = calibration_summary(folder) if has_posterior else ([], [], "")
    samples = load_posterior_samples(folder / "posterior_samples.csv") if has_posterior else None
    verdict, distinct = verdict_across_posterior(size, samples, workers)
    boxes, sweep_line = discovery(size, workers)
    passed = sum(r["passed"] for r in dock + dirs)
    total = len(dock) + len(dirs)
    inside = sum(r["inside"] for r in pats)
    met = sum(r["met"] for r in coverage)
    defaults_text = defaults_against_posterior(folder) if has_posterior else ""
    calibration_text = (
        f"""{line}. Each particle is the mean of its replicates on its own seeds; {defaults_text}
({shown}/calibration.md has the posterior, the pair plot, the tensions and the generations).

### Posterior predictive coverage

Draws of the posterior by weight (systematic resampling), each the mean of as many runs as a
particle's fit, on fresh seeds: the share inside each target's range (a draw that cannot
measure a pattern misses it). **{met} of {len(coverage)}** targets are met in at least half the
draws.

{_table(coverage)}

### Scale check

The posterior median at the calibration size and at the shipped scenarios' 100,000 consumers
(owners in the same proportion; the smaller world runs as many more replicates as it is
smaller, so both observe about as many owners). A target agrees when the two differ by at most
10% or two standard errors of the difference.

{_table(scale)}"""
        if has_posterior
        else f"No calibration in {shown}: run `fishschool calibrate`."
    )
    verdict_text = (
        f"""The shipped `owners` and `streamer` scenarios at {size.consumers:,} consumers (the
posterior was fitted at {calibrated_consumers:,}); each replicate draws its uncertain parameters
from the posterior by weight ({size.replicates} draws, {distinct} distinct particles; both
scenarios share the draw), so the spread includes what the calibration leaves uncertain, not only
Monte Carlo noise (`fishschool compare owners streamer --posterior
{shown}/posterior_samples.csv`). "owners ahead": the share of draws in which the owners beat
the streamer, in the metric's better direction, with its 95% Wilson interval; each draw is one
run, so seed noise pulls small differences towards half."""
        if has_posterior
        else f"""The shipped `owners` and `streamer` scenarios at {size.consumers:,} consumers, at
the defaults (no posterior in {shown}): {size.replicates} replicates; "owners ahead" is the
share of replicates in which the owners beat the streamer, with its 95% Wilson interval."""
    )
    text = f"""{HEADING}

Generated by `fishschool validate-model --size {size_name}` (fishschool {__version__},
{datetime.now(UTC).date()}): {size.consumers:,} consumers, {size.days} days,
{size.replicates} replicates per setting. Docking and direction checks: **{passed} of {total}
passed**. Patterns: **{inside} of {len(pats)}** targets met at the defaults; **{met} of
{len(coverage)}** in at least half the posterior's predictive draws.

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

## 4. Calibration (ABC-SMC, {shown})

{calibration_text}

## 5. The owners-versus-streamer verdict under parameter uncertainty

{verdict_text}

{_table(verdict)}

## 6. Where does the streamer beat the owners? (scenario discovery)

PRIM (Friedman & Fisher 1999; EMA Workbench) on the shipped verdict sweep, {sweep_line}: both
channels in the same market (the `hybrid` scenario at the defaults), the owners' hype and the
platform's desk as levers, and over their ranges the per-channel constants that remain declared
uncertainties (initial trust, the brands' desks, the brands' loss tolerance and margins) and two
calibrated parameters over their priors (the streamer's vetting capacity, the spread of brand
quality). For each metric: how often the streamer comes out ahead, and the box of parameters
holding most of those points (coverage: the share of her wins inside the box; density: the
share of the box's points she wins). One run per point and no holdout: a box is a lead to
test, not a finding; none is drawn for fewer than 10 wins.

{chr(10).join(f"- {b}" for b in boxes)}
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)  # a report in full or not at all
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
