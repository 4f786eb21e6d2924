"""Reading an optimisation (``fishschool optimize``): the Pareto figure, the recommendation.

:func:`write_report` draws ``pareto.png`` (every mix evaluated, the Pareto set coloured by its
risk, the recommended robust mix starred) and writes ``recommendation.md`` (the robust mix, its
regret on each uncertainty sample against that sample's best mix, which uncertainty flips it,
the Pareto set, the speed); :func:`format_report` is the short version the command prints.
The numbers come from :mod:`sim.experiments.optimize` (its tables); nothing is recomputed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sim.experiments import atomic
from sim.experiments.optimize import Objective, OptimizationResult
from sim.world.metrics import METRICS

PARETO_ROWS = 20  # rows of the Pareto set printed and in the report
FLIPS_SHOWN = 3  # parameters that flip the recommendation, printed (all are in the report)
IDS = ("candidate", "best_candidate", "robust_low", "robust_high", "sample", "seed", "generation")


def _num(x: Any) -> str:
    """A number for a table: 4 significant digits, thousands separated; '-' for none."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "-"
    if isinstance(x, bool | np.bool_):
        return "yes" if x else "no"
    if isinstance(x, int | np.integer):
        return f"{int(x):,}"
    if isinstance(x, float | np.floating):
        if x != 0 and abs(x) < 1e-3:
            return f"{x:.2e}"
        if abs(x) >= 1000:
            return f"{x:,.0f}"
        return f"{x:.4g}"
    return str(x)


def _metric_label(o: Objective) -> str:
    unit = METRICS[o.metric].unit if o.metric in METRICS else ""
    where = f", {o.channel}" if o.channel != "all" else ""
    return f"{o.metric}{where}" + (f" ({unit})" if unit else "")


def risk_column(result: OptimizationResult) -> tuple[str, str]:
    """The column that says each mix's risk on the primary objective, and its label: the
    search's measure (CVaR or maximum regret) or, for the mean, the maximum regret."""
    opt = result.opt
    o = opt.objectives[0]
    if opt.measure == "cvar":
        return f"cvar.{o.label}", f"CVaR{opt.level:g} of {o.metric} (worst {opt.level:.0%})"
    return f"max_regret.{o.label}", f"max regret of {o.metric}"


def _axes(result: OptimizationResult, stat: str) -> tuple[str, str, str, str]:
    """Columns and labels of the figure's x and y: objective 1 against objective 2 (or, with
    one objective, against its risk), as ``stat`` (mean, cvar or regret) over the samples."""
    objs = result.opt.objectives
    names = {"mean": "mean", "cvar": f"CVaR{result.opt.level or 1:g}", "regret": "max regret"}
    prefix = {"mean": "mean", "cvar": "cvar", "regret": "max_regret"}[stat]
    x = (f"{prefix}.{objs[0].label}", f"{names[stat]} " + _metric_label(objs[0]))
    if len(objs) > 1:
        y = (f"{prefix}.{objs[1].label}", f"{names[stat]} " + _metric_label(objs[1]))
    else:
        y = risk_column(result)
    return x[0], x[1], y[0], y[1]


def pareto_figure(result: OptimizationResult):
    """Objective 1 against objective 2 for every mix evaluated (grey; a cross when over the
    budget), the Pareto set coloured by its risk on the primary objective, the recommended
    mix starred: their means over the samples, and beside them (for CVaR or regret) the
    values the search ranked, where the Pareto set is a front."""
    opt, cand = result.opt, result.candidates
    stats = ["mean"] if opt.measure == "mean" else ["mean", opt.measure]
    rcol, rlabel = risk_column(result)
    fig, axes = plt.subplots(
        1, len(stats), figsize=(6.0 * len(stats) + 1.4, 5.0), squeeze=False, layout="constrained"
    )
    sc = None
    low_is_good = rcol.startswith("max_regret") or opt.objectives[0].goal == "min"
    for ax, stat in zip(axes[0], stats, strict=True):
        xcol, xlabel, ycol, ylabel = _axes(result, stat)
        rest = cand[~cand.pareto]
        ok = rest.feasible.astype(bool)
        ax.scatter(rest[xcol][ok], rest[ycol][ok], s=14, c="0.72", label="other mixes", zorder=1)
        if (~ok).any():
            ax.scatter(
                rest[xcol][~ok],
                rest[ycol][~ok],
                s=16,
                c="0.72",
                marker="x",
                linewidth=0.8,
                label="over the budget",
                zorder=1,
            )
        front = cand[cand.pareto]
        if not front.empty:
            sc = ax.scatter(
                front[xcol],
                front[ycol],
                c=front[rcol],
                cmap="viridis_r" if low_is_good else "viridis",
                s=46,
                edgecolor="k",
                linewidth=0.5,
                label="Pareto set",
                zorder=2,
            )
        rec = cand[cand.recommended]
        if not rec.empty:
            ax.scatter(
                rec[xcol],
                rec[ycol],
                marker="*",
                s=320,
                facecolor="none",
                edgecolor="crimson",
                linewidth=1.6,
                label=f"recommended (#{int(rec.candidate.iloc[0])})",
                zorder=3,
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(
            "expected values" if stat == "mean" else f"what the search ranked ({opt.measure})",
            fontsize=10,
        )
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, loc="best")
    if sc is not None:
        fig.colorbar(sc, ax=list(axes[0]), label=rlabel)
    fig.suptitle(
        f"{opt.name}: {len(cand)} mixes on {opt.samples} uncertainty samples; colour: {rlabel}",
        fontsize=10,
    )
    return fig


def _table(df: pd.DataFrame, columns: Sequence[str] | None = None) -> str:
    """A Markdown table."""
    cols = list(columns if columns is not None else df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df[cols].to_dict("records"):  # each value with its column's own type
        cells = [_id(row[c]) if c in IDS else _num(row[c]) for c in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _id(x: Any) -> str:
    """A seed or an id: the whole number as it is."""
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else str(int(x))


def _bounds(lv: Any) -> str:
    if lv.integer:
        return f"[{int(lv.low)}, {int(lv.high)}]"
    return f"[{lv.low:g}, {lv.high:g}]"


def _lever_names(result: OptimizationResult) -> list[str]:
    return [lv.name for lv in result.opt.levers]


def _objective_columns(result: OptimizationResult) -> list[str]:
    opt = result.opt
    cols = []
    for o in opt.objectives:
        cols.append(f"mean.{o.label}")
        if opt.measure != "mean":
            cols.append(f"{opt.measure}.{o.label}")
    primary = opt.objectives[0]
    if opt.measure != "regret":
        cols.append(f"max_regret.{primary.label}")
    if opt.budget is not None:
        cols.append("spend_per_1000")
    return cols


def _mix(result: OptimizationResult, candidate: int | None) -> str:
    if candidate is None:
        return "none"
    row = result.candidates.set_index("candidate").loc[candidate]
    parts = [f"{name} {_num(row[name])}" for name in _lever_names(result)]
    return f"#{candidate} ({', '.join(parts)})"


def flip_sentences(result: OptimizationResult) -> list[str]:
    """One sentence per uncertain parameter that flips the recommendation."""
    out = []
    for f in result.flips.to_dict("records"):
        if not f["flips"]:
            continue
        lo = None if pd.isna(f["robust_low"]) else int(f["robust_low"])
        hi = None if pd.isna(f["robust_high"]) else int(f["robust_high"])
        out.append(
            f"{f['parameter']} flips it: at or below its median {_num(f['median'])} "
            f"({f['samples_low']} samples) the robust mix is {_mix(result, lo)}; above it "
            f"({f['samples_high']} samples) {_mix(result, hi)}; its own robust mix saves "
            f"{_num(f['regret_saved'])} of maximum regret in its half."
        )
    return out


def format_report(result: OptimizationResult) -> str:
    """What the command prints: the Pareto set, the recommended mix, what flips it, speed."""
    opt = result.opt
    lines = [f"Pareto set ({len(result.pareto)} of {len(result.candidates)} mixes evaluated):"]
    cols = ["candidate", *_lever_names(result), *_objective_columns(result)]
    shown = result.pareto.head(PARETO_ROWS)
    lines.append(shown[cols].to_string(index=False, float_format=lambda x: _num(float(x))))
    if len(result.pareto) > PARETO_ROWS:
        lines.append(f"... {len(result.pareto) - PARETO_ROWS} more in pareto.csv")
    primary = opt.objectives[0]
    lines.append("")
    if result.recommended is None:
        lines.append("No mix to recommend (no feasible mix with all its values).")
    else:
        row = result.candidates.set_index("candidate").loc[result.recommended]
        reg = result.samples[f"regret.{primary.label}"]
        worst = _num(row[f"max_regret.{primary.label}"])
        lines.append(
            f"Recommended robust mix: {_mix(result, result.recommended)}: smallest maximum "
            f"regret of {primary.label} in the Pareto set, {worst} "
            f"(mean regret {_num(float(reg.mean()))}; best mix on {int((reg <= 0).sum())} of "
            f"{len(reg)} samples)."
        )
        flips = flip_sentences(result)
        if flips:
            lines += flips[:FLIPS_SHOWN]
            if len(flips) > FLIPS_SHOWN:
                lines.append(
                    f"... {len(flips) - FLIPS_SHOWN} more parameters flip it, saving less "
                    "regret: flips.csv, recommendation.md"
                )
        elif not result.flips.empty:
            lines.append(
                "No single uncertain parameter flips it (the same robust mix on both sides "
                "of every parameter's median)."
            )
    lines += result.notes
    t = result.timings
    lines.append(
        f"\n{t.get('runs_computed', 0)} runs computed, {t.get('runs_reused', 0)} reused, in "
        f"{_num(t.get('wall_s'))}s on {t.get('workers', 1)} worker(s): "
        f"{_num(t.get('runs_per_minute'))} runs a minute."
    )
    return "\n".join(lines)


def recommendation_text(result: OptimizationResult) -> str:
    """``recommendation.md``."""
    opt = result.opt
    primary = opt.objectives[0]
    t = result.timings
    risk = {
        "mean": "the mean over the samples",
        "cvar": f"CVaR at level {opt.level:g} (the mean of the worst {opt.level:.0%} of samples)",
        "regret": "the maximum regret over the samples (against the best mix of each sample)",
    }[opt.measure]
    lines = [
        f"# Optimisation: {opt.name}",
        "",
        f"**Question.** {opt.question or '(none given)'}",
        "",
        "## Set-up",
        "",
        "- Levers searched: "
        + "; ".join(
            f"`{lv.name}` in {list(lv.values) if lv.is_choice else _bounds(lv)}"
            for lv in opt.levers
        ),
        "- Objectives: "
        + "; ".join(f"{o.goal} `{o.metric}` ({o.channel})" for o in opt.objectives)
        + f" (the first, `{primary.label}`, is primary)",
        f"- Risk measure searched: {risk}",
        f"- Uncertainty: {opt.samples} samples (each a parameter draw and a seed; every mix "
        "meets the same samples: common random numbers)"
        + (f", drawn from `{opt.posterior}`" if opt.posterior else "")
        + (
            "; ranges sampled by Latin hypercube: "
            + ", ".join(f"`{n}` in [{lo:g}, {hi:g}]" for n, lo, hi in opt.uncertain)
            if opt.uncertain
            else ""
        ),
        f"- World: {opt.base.params.world.consumers:,} consumers, {opt.base.params.world.days} "
        "days; everything else as the scenario holds it (`manifest.json` has every parameter)",
        f"- Search: NSGA-II, population {opt.population}, {opt.generations} "
        f"generation{'s' if opt.generations != 1 else ''}, seed {opt.search_seed}",
    ]
    if opt.budget is not None:
        b = opt.budget
        prices = ", ".join(f"`{n}` {p:g} RMB a unit" for n, p in b.prices)
        lines.append(
            f"- Budget: {b.limit:,.0f} RMB per 1,000 consumers over the run, on the "
            f"{'mean over the samples' if b.over == 'mean' else 'spend of every sample'} of "
            + (" + ".join(f"`{m}`" for m in b.spend) or "nothing")
            + (f" plus lever prices ({prices})" if prices else "")
        )
    lines += ["", "## Recommended robust mix", ""]
    if result.recommended is None:
        lines.append("None: no feasible mix with all its objective values.")
    else:
        row = result.candidates.set_index("candidate").loc[result.recommended]
        lines.append(
            f"**{_mix(result, result.recommended)}**: among the Pareto set, the mix with the "
            f"smallest maximum regret of `{primary.label}` across the samples "
            f"({_num(row[f'max_regret.{primary.label}'])}), the regret on a sample being how "
            "much worse it does there than the best feasible mix evaluated on that sample."
        )
        lines += [
            "",
            "| objective | mean | " + ("risk | " if opt.measure != "mean" else "") + "max regret |",
            "|---|---|" + ("---|" if opt.measure != "mean" else "") + "---|",
        ]
        for o in opt.objectives:
            risk_cell = (
                f"{_num(row[f'{opt.measure}.{o.label}'])} | " if opt.measure != "mean" else ""
            )
            lines.append(
                f"| {o.goal} {o.label} | {_num(row[f'mean.{o.label}'])} | {risk_cell}"
                f"{_num(row[f'max_regret.{o.label}'])} |"
            )
        if opt.budget is not None:
            lines.append(
                f"\nSpend: {_num(row['spend_per_1000'])} RMB per 1,000 consumers on average "
                f"(at most {_num(row['spend_per_1000_max'])}), against a limit of "
                f"{opt.budget.limit:,.0f}."
            )
        lines += [
            "",
            "### Its regret on each sample",
            "",
            "The best mix of each sample is the feasible mix evaluated that does best on it.",
            "",
        ]
        cols = [
            "sample",
            "seed",
            "best_candidate",
            f"best.{primary.label}",
            f"recommended.{primary.label}",
            f"regret.{primary.label}",
        ]
        lines.append(_table(result.samples, cols))
        lines += ["", "## What flips it", ""]
        if result.flips.empty:
            lines.append(
                f"{len(result.samples)} samples are too few to split (4 needed)."
                if len(result.samples) < 4
                else "No uncertain parameter varies over the samples."
            )
        else:
            lines.append(
                "For each uncertain parameter, the samples at or below its median and those "
                "above it: the robust mix (smallest maximum regret of the primary objective "
                "among the Pareto set) on each half; how much maximum regret that half's own "
                "robust mix saves there against the recommended mix (`regret_saved`: a flip that "
                "saves little is noise); and the rank correlation (Spearman) of the parameter "
                "with the recommended mix's regret. With few samples in a half, read a flip as "
                "a hint, not a finding."
            )
            lines.append("")
            sentences = flip_sentences(result)
            lines += [f"- {s}" for s in sentences] or [
                "- No single parameter flips it: the same robust mix on both sides of every "
                "parameter's median."
            ]
            lines += ["", _table(result.flips)]
    lines += ["", f"## Pareto set ({len(result.pareto)} mixes)", ""]
    cols = ["candidate", "generation", *_lever_names(result), *_objective_columns(result)]
    lines.append(_table(result.pareto.head(PARETO_ROWS), cols))
    if len(result.pareto) > PARETO_ROWS:
        lines.append(f"\n{len(result.pareto) - PARETO_ROWS} more in `pareto.csv`.")
    lines += ["", "![Pareto set](pareto.png)", ""]
    if result.notes:
        lines += ["## Notes", "", *[f"- {n}" for n in result.notes], ""]
    lines += [
        "## Speed",
        "",
        f"{t.get('runs_computed', 0)} runs computed and {t.get('runs_reused', 0)} reused "
        f"({t.get('candidates', 0)} mixes x {opt.samples} samples) in {_num(t.get('wall_s'))} s "
        f"on {t.get('workers', 1)} worker(s): {_num(t.get('runs_per_minute'))} runs "
        f"({_num(t.get('candidates_per_minute'))} mixes) a minute.",
        "",
    ]
    return "\n".join(lines)


def write_report(result: OptimizationResult, folder: str | Path) -> list[str]:
    """Write ``pareto.png`` and ``recommendation.md`` into ``folder``; their names."""
    folder = Path(folder)
    fig = pareto_figure(result)
    try:
        atomic.write_file(folder / "pareto.png", lambda fh: fig.savefig(fh, format="png", dpi=120))
    finally:
        plt.close(fig)
    atomic.write_text(folder / "recommendation.md", recommendation_text(result))
    return ["pareto.png", "recommendation.md"]
