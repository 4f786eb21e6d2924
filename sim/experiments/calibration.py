"""Pattern-oriented calibration by approximate Bayesian computation (ABC rejection).

Several patterns of the brief must hold at once (Grimm et al. 2005, pattern-oriented
modelling): the targets T1-T7 of docs/ODD.md section 1.2, each a range for one metric of one
channel (:data:`TARGETS`). The calibration

1. draws ``draws`` parameter sets from uniform priors over the uncertain parameters
   (:data:`PRIORS`) with a Latin hypercube, and runs each once (a sweep: any executor, resumable,
   see :mod:`sim.experiments.sweep`);
2. scores every draw by its distance to the targets: for each target, how far the simulated
   value lies outside the range, in units of the range's width (0 inside); the distance is the
   root of the sum of squares;
3. accepts the ``accept`` share of draws closest to the targets (rejection ABC with a quantile
   tolerance: Pritchard et al. 1999; Beaumont, Zhang & Balding 2002); the accepted draws are a
   sample of the approximate posterior, reported as ranges (5%-95%) and medians;
4. checks two candidate defaults with replicates, the posterior median and the accepted draw
   closest to the targets, and proposes the one that meets more targets.

Where the brief gives only the article's claim (the owners' low return rate) there is no
target: the model reports what it produces.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.experiments.scenario import Scenario, default
from sim.experiments.sweep import Factor, Sweep, run_sweep
from sim.world.params import is_whole_number


@dataclass(frozen=True)
class Target:
    id: str
    pattern: str
    channel: str
    metric: str
    low: float
    high: float
    source: str


TARGETS: tuple[Target, ...] = (
    Target(
        "T1",
        "streamer returns, apparel-like goods",
        "streamer",
        "apparel_return_rate",
        0.30,
        0.50,
        "trade press; POM 2024 implies ~35-38%",
    ),
    Target(
        "T2",
        "conventional returns, all goods",
        "conventional",
        "return_rate",
        0.10,
        0.15,
        "trade press; NRF 2023",
    ),
    Target(
        "T3",
        "conventional conversion (orders / exposures)",
        "conventional",
        "conversion",
        0.01,
        0.04,
        "Invesp 2023, Monetate",
    ),
    Target(
        "T4",
        "streamer orders per viewer-session",
        "streamer",
        "visit_conversion",
        0.01,
        0.03,
        "derived from Li's Sep 2022 session (brief)",
    ),
    Target(
        "T5",
        "group monthly conversion (owners)",
        "owners",
        "monthly_buyer_conversion",
        0.06,
        0.10,
        "trade press 2025",
    ),
    Target(
        "T6",
        "repeat purchase within 90 days (owners)",
        "owners",
        "repeat_purchase_rate",
        0.40,
        0.60,
        "trade press 2025; Yunji 2023",
    ),
    Target(
        "T7",
        "top 1% of owners: sales per member-month (RMB)",
        "owners",
        "owner_sales_per_member_month_p99",
        120.0,
        300.0,
        "the article: ~200 RMB",
    ),
    Target(
        "T7b",
        "top 1% over median owner (heavy tail)",
        "owners",
        "owner_sales_tail_ratio",
        5.0,
        1000.0,
        "the article: the median far below the top",
    ),
)

# Uniform priors over the uncertain parameters the patterns are most sensitive to.
PRIORS: dict[str, tuple[float, float]] = {
    "purchase.intercept": (-10.5, -7.0),
    "purchase.need": (1.0, 4.5),
    "purchase.hype": (0.5, 3.5),
    "purchase.trust": (0.5, 3.5),
    "consumers.need_rate": (0.01, 0.08),
    "streamer.products_seen": (3, 20),
    "returns.intercept": (-5.0, -2.5),
    "returns.misfit": (1.0, 4.5),
    "returns.gap": (0.5, 4.0),
    "returns.impulse": (0.5, 3.5),
    "owners.activity_sigma": (0.5, 2.5),
    "owners.open_rate": (0.1, 0.6),
}

DERIVED = {
    "owner_sales_tail_ratio": (
        "owner_sales_per_member_month_p99",
        "owner_sales_per_member_month_median",
    )
}


def smaller_world(consumers: int, days: int) -> list[str]:
    """Overrides for the default world at another size, owners in the default proportion
    (500 for 100,000 consumers). Shared by calibration and validation."""
    ratio = default().params
    owners = max(1, round(ratio.owners.count * consumers / ratio.world.consumers))
    return [f"world.consumers={consumers}", f"owners.count={owners}", f"world.days={days}"]


def calibration_world(consumers: int = 10_000, days: int = 120) -> Scenario:
    """The world the calibration runs in: the defaults at a smaller size (same ratios)."""
    return default(smaller_world(consumers, days))


def refined_priors(posterior: str | Path) -> dict[str, tuple[float, float]]:
    """Priors narrowed to an earlier round's accepted 5%-95% ranges (a second ABC round
    searches where the first found the patterns; sequential ABC in its simplest form)."""
    post = pd.read_csv(posterior).set_index("parameter")
    out = {}
    for name, (lo, hi) in PRIORS.items():
        if name in post.index:
            low = max(lo, float(post.loc[name, "q05"]))
            high = min(hi, float(post.loc[name, "q95"]))
            out[name] = (low, high) if high > low else (lo, hi)  # an empty box: keep the prior
        else:
            out[name] = (lo, hi)
    return out


def calibration_sweep(
    base: Scenario, draws: int, seed: int, priors: dict[str, tuple[float, float]] | None = None
) -> Sweep:
    factors = []
    for name, (lo, hi) in (priors or PRIORS).items():
        factors.append(
            Factor(
                name, "uncertainty", low=float(lo), high=float(hi), integer=is_whole_number(name)
            )
        )
    metrics = sorted(
        {t.metric for t in TARGETS if t.metric not in DERIVED}
        | {m for pair in DERIVED.values() for m in pair}
    )
    return Sweep(
        name="calibration",
        question="ABC calibration to the brief's patterns",
        path=Path("-"),
        text=json.dumps({"priors": priors or PRIORS, "draws": draws, "seed": seed}),
        base=base,
        design="lhs",
        samples=draws,
        levels=2,
        replicates=1,
        seed=seed,
        metrics=tuple(metrics),
        factors=tuple(factors),
    )


def pattern_values(data: pd.DataFrame) -> pd.DataFrame:
    """One row per point, one column per target id: the simulated value of each pattern."""
    wide = data.pivot_table(index="point_id", columns=["channel", "metric"], values="value")
    out = pd.DataFrame(index=wide.index)

    def column(channel: str, metric: str) -> pd.Series:
        # A metric that is NaN in every run (e.g. repeat purchase in a run too short for a
        # 90-day follow-up) is dropped by the pivot: it is missing, not an error.
        if (channel, metric) in wide.columns:
            return wide[(channel, metric)]
        return pd.Series(np.nan, index=wide.index)

    for t in TARGETS:
        if t.metric in DERIVED:
            num, den = DERIVED[t.metric]
            out[t.id] = column(t.channel, num) / column(t.channel, den).replace(0, np.nan)
        else:
            out[t.id] = column(t.channel, t.metric)
    return out


def distance(values: pd.DataFrame) -> pd.Series:
    """Distance of each point to the target ranges (0 when every pattern is inside)."""
    parts = []
    for t in TARGETS:
        v = values[t.id]
        width = t.high - t.low
        outside = np.maximum(t.low - v, 0) + np.maximum(v - t.high, 0)
        parts.append((outside / width).fillna(10.0) ** 2)  # a missing pattern counts as far
    return np.sqrt(sum(parts))


def inside(values: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({t.id: (values[t.id] >= t.low) & (values[t.id] <= t.high) for t in TARGETS})


@dataclass
class Calibration:
    draws: pd.DataFrame  # parameters, pattern values and distance, one row per draw
    accepted: pd.DataFrame
    posterior: pd.DataFrame  # parameter, q05, median, q95, prior low, prior high
    epsilon: float
    candidates: dict[str, dict[str, Any]]
    chosen: str


def calibrate(
    out: str | Path,
    *,
    draws: int = 600,
    accept: float = 0.05,
    consumers: int = 10_000,
    days: int = 120,
    seed: int = 2026,
    replicates: int = 4,
    executor=None,
    workers: int | None = None,
    progress=None,
    refine: str | Path | None = None,
) -> Calibration:
    """Run the ABC calibration into ``out`` (resumable) and write its report files.

    ``refine``: the ``posterior.csv`` of an earlier round, whose accepted ranges become the
    priors of this one.
    """
    from sim.experiments.experiment import run_experiment

    out = Path(out)
    base = calibration_world(consumers, days)
    priors = refined_priors(refine) if refine else dict(PRIORS)
    sweep = calibration_sweep(base, draws, seed, priors)
    run_sweep(sweep, out / "draws", executor, progress)
    data = pd.read_parquet(out / "draws" / "sweep.parquet")
    params = data.drop_duplicates("point_id").set_index("point_id")[list(PRIORS)]
    values = pattern_values(data)
    table = params.join(values)
    table["distance"] = distance(values)
    n_accept = max(5, int(round(accept * len(table))))
    accepted = table.nsmallest(n_accept, "distance")
    epsilon = float(accepted["distance"].max())
    post = pd.DataFrame(
        {
            "parameter": list(PRIORS),
            "q05": [accepted[p].quantile(0.05) for p in PRIORS],
            "median": [accepted[p].median() for p in PRIORS],
            "q95": [accepted[p].quantile(0.95) for p in PRIORS],
            "prior_low": [priors[p][0] for p in PRIORS],
            "prior_high": [priors[p][1] for p in PRIORS],
        }
    )
    best = accepted.iloc[0]
    candidates = {
        "posterior median": {
            p: _typed(p, m) for p, m in zip(post.parameter, post["median"], strict=True)
        },
        "closest draw": {p: _typed(p, best[p]) for p in PRIORS},
    }
    checks = {}
    for label, point in candidates.items():
        sets = [f"{k}={v}" for k, v in point.items()]
        scenario = default([*base.overrides, *sets, f"replicates={replicates}"])
        scenario = dataclasses.replace(scenario, name=label.replace(" ", "_"))
        exp = run_experiment([scenario], seed=seed + 1, workers=workers)
        summary = exp.summary
        vals = pattern_values(summary.assign(point_id=summary.replicate))
        checks[label] = {
            "point": point,
            "values": vals.mean().to_dict(),
            "inside": int(inside(vals.mean().to_frame().T).iloc[0].sum()),
            "distance": float(distance(vals.mean().to_frame().T).iloc[0]),
        }
    chosen = max(checks, key=lambda k: (checks[k]["inside"], -checks[k]["distance"]))
    result = Calibration(table, accepted, post, epsilon, checks, chosen)
    _write(out, result, base, priors)
    return result


def _typed(name: str, value: float) -> float | int:
    if is_whole_number(name):
        return int(round(value))
    return float(round(value, 4))


def _write(out: Path, res: Calibration, base: Scenario, priors: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res.draws.to_csv(out / "draws.csv")
    res.accepted.to_csv(out / "accepted.csv")
    res.posterior.to_csv(out / "posterior.csv", index=False)
    (out / "candidates.json").write_text(json.dumps(res.candidates, indent=2), encoding="utf-8")
    chosen = res.candidates[res.chosen]["point"]
    lines = [
        "# Calibrated uncertainties (ABC rejection; fishschool calibrate)",
        "",
        "[uncertainties]",
    ] + [f"{k} = {v}" for k, v in chosen.items()]
    (out / "calibrated.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")

    # Figure 1: each pattern, all draws versus accepted draws, and the target range.
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for ax, t in zip(axes.ravel(), TARGETS, strict=False):
        allv = res.draws[t.id].replace([np.inf, -np.inf], np.nan).dropna()
        acc = res.accepted[t.id].replace([np.inf, -np.inf], np.nan).dropna()
        bins = np.linspace(allv.quantile(0.01), allv.quantile(0.99), 30) if len(allv) > 1 else 10
        ax.hist(allv, bins=bins, color="lightgrey", label="prior draws")
        ax.hist(acc, bins=bins, color="#1b9e77", label="accepted")
        ax.axvspan(
            t.low, min(t.high, allv.quantile(0.99)), color="orange", alpha=0.2, label="target"
        )
        ax.set_title(f"{t.id}: {t.pattern}", fontsize=8)
    axes[0][0].legend(frameon=False, fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "patterns.png")
    plt.close(fig)
    # Figure 2: posterior marginals against the priors.
    names = list(PRIORS)
    fig, axes = plt.subplots(3, 4, figsize=(14, 8))
    for ax, name in zip(axes.ravel(), names, strict=False):
        lo, hi = priors[name]
        ax.hist(res.accepted[name], bins=np.linspace(lo, hi, 15), color="#1b9e77")
        ax.set_xlim(lo, hi)
        ax.set_title(name, fontsize=8)
    fig.suptitle("Accepted draws (approximate posterior) over the prior ranges")
    fig.tight_layout()
    fig.savefig(out / "posterior.png")
    plt.close(fig)

    rows = [
        "| id | pattern | target | " + " | ".join(res.candidates) + " |",
        "|---|---|---|" + "---|" * len(res.candidates),
    ]
    for t in TARGETS:
        cells = []
        for c in res.candidates.values():
            v = c["values"].get(t.id, float("nan"))
            ok = "ok" if t.low <= v <= t.high else "miss"
            cells.append(f"{v:.3g} ({ok})")
        rows.append(f"| {t.id} | {t.pattern} | {t.low:g}-{t.high:g} | " + " | ".join(cells) + " |")
    post = ["| parameter | prior | accepted 5% | median | 95% |", "|---|---|---|---|---|"]
    for r in res.posterior.itertuples(index=False):
        post.append(
            f"| `{r.parameter}` | {r.prior_low:g}-{r.prior_high:g} | {r.q05:.3g} | "
            f"{r.median:.3g} | {r.q95:.3g} |"
        )
    n = len(res.draws)
    text = f"""# Calibration report

ABC rejection over {len(PRIORS)} uncertain parameters: {n} Latin-hypercube draws from uniform
priors, one run each ({base.params.world.consumers:,} consumers,
{base.params.owners.count:,} owners, {base.params.world.days} days); the
{len(res.accepted)} draws closest to the targets accepted (tolerance epsilon =
{res.epsilon:.3g}; {int((res.draws.distance == 0).sum())} draws met every target).

## Patterns: targets and the two candidate defaults (means over replicates)

{chr(10).join(rows)}

Chosen as the default: **{res.chosen}** (meets {res.candidates[res.chosen]["inside"]} of
{len(TARGETS)} targets; distance {res.candidates[res.chosen]["distance"]:.3g}).

## Accepted parameter ranges (approximate posterior)

{chr(10).join(post)}

![patterns](patterns.png)

![posterior](posterior.png)
"""
    (out / "calibration.md").write_text(text, encoding="utf-8")


def check_out(out: str | Path) -> Path:
    """calibrate writes into ``out`` and resumes there: a new or empty folder, or one an
    earlier calibration wrote (draws/ and its report files); never a folder of other files."""
    from sim.experiments.output import OutputExistsError, check_writable

    out = check_writable(out)
    if out.is_dir() and any(out.iterdir()):
        ours = (out / "draws" / "manifest.json").is_file() or (out / "calibration.md").is_file()
        if not ours:
            raise OutputExistsError(
                f"{out}: not a calibration folder (no draws/manifest.json or calibration.md) "
                "and not empty: choose another --out"
            )
    return out


def check_posterior(path: str | Path, option: str) -> None:
    """An earlier round's posterior.csv: readable, with parameter, q05 and q95 columns."""
    from sim.experiments.output import ResultsError, read_csv

    try:
        read_csv(Path(path), ("parameter", "q05", "q95"))
    except ResultsError as err:
        raise ResultsError(f"{option} {err}") from None


def docs_folder() -> Path:
    """``docs/calibration/`` of this checkout: the shipped calibration's report files."""
    return Path(__file__).resolve().parents[2] / "docs" / "calibration"
