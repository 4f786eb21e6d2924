"""Reports of an experiment: the side-by-side table, figures, report.md and report.html.

Everything here reads the saved tables (or the same tables in memory), so ``fishschool report
DIR`` redraws exactly what ``fishschool run`` or ``compare`` drew. A results folder of ``compare
--explain`` also holds ``explain/NAME/`` (explain.csv, runs.csv, manifest.json, explain.png, as
``fishschool explain`` writes them); the report then has a section "Why they differ" with each
explanation's parts and its waterfall.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import plots
from analysis.explain import OTHER, STRUCTURE, TOTAL, Explanation, format_value
from analysis.stats import (
    channel_presence,
    channels_present,
    paired_differences,
    scenario_means,
    wilson_interval,
)
from sim.experiments.experiment import Experiment
from sim.world.channels import ALL
from sim.world.metrics import METRICS

TABLE_METRICS = (
    "reach_share",
    "conversion",
    "products_per_visit",
    "visit_conversion",
    "monthly_buyer_conversion",
    "return_rate",
    "defect_share",
    "resolution_rate",
    "vetted_share",
    "net_gmv",
    "brand_profit",
    "profit_per_order",
    "profit_per_net_rmb",
    "brands",
    "satisfaction",
    "repeat_purchase_rate",
)
PERCENT = {name for name, m in METRICS.items() if m.is_share}  # shown as percentages
EVENT_KEYS = ("streamer_removed_day", "churn_wave_day", "defective_batch_day")
EXPLAIN = "explain"  # the subfolder of a results folder holding compare --explain's explanations


@dataclass
class Results:
    """An experiment's saved tables and manifest (what a results folder holds)."""

    summary: pd.DataFrame
    timeseries: pd.DataFrame
    owners: pd.DataFrame
    manifest: dict[str, Any]

    @property
    def scenarios(self) -> list[str]:
        return [s["name"] for s in self.manifest["scenarios"]]

    @classmethod
    def load(cls, folder: str | Path) -> Results:
        """Read a results folder written by ``fishschool run`` or ``compare``."""
        folder = Path(folder)
        missing = [
            f
            for f in ("summary.csv", "timeseries.parquet", "owners.parquet", "manifest.json")
            if not (folder / f).is_file()
        ]
        if missing:
            raise FileNotFoundError(
                f"{folder}: not a results folder (missing {', '.join(missing)})"
            )
        return cls(
            summary=pd.read_csv(folder / "summary.csv"),
            timeseries=pd.read_parquet(folder / "timeseries.parquet"),
            owners=pd.read_parquet(folder / "owners.parquet"),
            manifest=json.loads((folder / "manifest.json").read_text(encoding="utf-8")),
        )


def _fmt(metric: str, v: float) -> str:
    if v is None or not np.isfinite(v):
        return "-"
    if metric in PERCENT:
        return f"{100 * v:.2f}%"
    if metric == "satisfaction":
        return f"{v:.3f}"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def _interval(metric: str, m: float, lo: float, hi: float) -> str:
    if not np.isfinite(lo):
        return _fmt(metric, m)
    return f"{_fmt(metric, m)} [{_fmt(metric, lo)}, {_fmt(metric, hi)}]"


def comparison_table(
    summary: pd.DataFrame, scenarios: list[str], metrics: tuple[str, ...] = TABLE_METRICS
) -> pd.DataFrame:
    """Each scenario's mean [95% interval], and each later scenario minus the first, paired.

    Rows are (metric, channel); channels that sold nothing in every scenario are left out.
    """
    means = scenario_means(summary).set_index(["scenario", "channel", "metric"])
    diffs = (
        paired_differences(summary, scenarios[0]).set_index(["scenario", "channel", "metric"])
        if len(scenarios) > 1
        else None
    )
    present = channel_presence(summary)  # a channel switched off in a scenario shows "-"
    channels = [*channels_present(summary), ALL]

    def shown(sc: str, ch: str, metric: str, frame: pd.DataFrame) -> bool:
        return (sc, ch, metric) in frame.index and bool(present.get((sc, ch), False))

    rows, index = [], []
    for metric in metrics:
        for ch in channels:
            row = {}
            for sc in scenarios:
                if shown(sc, ch, metric, means):
                    m = means.loc[(sc, ch, metric)]
                    row[sc] = _interval(metric, m["mean"], m["lo"], m["hi"])
                else:
                    row[sc] = "-"
            if diffs is not None:
                for sc in scenarios[1:]:
                    key = (sc, ch, metric)
                    label = f"{sc} - {scenarios[0]}"
                    if shown(sc, ch, metric, diffs) and present.get((scenarios[0], ch), False):
                        d = diffs.loc[key]
                        row[label] = _interval(metric, d["diff"], d["lo"], d["hi"])
                    else:
                        row[label] = "-"
            rows.append(row)
            index.append((metric, ch))
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=["metric", "channel"]))


def channel_duel(
    summary: pd.DataFrame, metrics: Sequence[str], a: str = "owners", b: str = "streamer"
) -> pd.DataFrame:
    """How often channel ``a`` beats channel ``b``, replicate by replicate, on each metric (in
    the direction the metric declares). Each channel is read in the first scenario where it
    sells; with replicates drawn from a posterior, the share is over posterior draws.

    Returns ``metric, better, a_scenario, b_scenario, replicates, win_share, low, high``
    (``low``-``high``: the share's 95% Wilson interval; empty when a channel sells in no
    scenario).
    """
    orders = summary[summary.metric == "orders"].groupby(["scenario", "channel"], sort=False)
    sells = orders.value.sum()
    scenarios = list(dict.fromkeys(summary.scenario))
    where = {}
    for channel in (a, b):
        found = [sc for sc in scenarios if sells.get((sc, channel), 0) > 0]
        if not found:
            return pd.DataFrame()
        where[channel] = found[0]
    rows = []
    for metric in metrics:
        better = METRICS[metric].better if metric in METRICS else "neither"
        if better not in ("higher", "lower"):
            continue
        values = {}
        for channel in (a, b):
            part = summary[
                (summary.scenario == where[channel])
                & (summary.channel == channel)
                & (summary.metric == metric)
            ]
            values[channel] = part.set_index("replicate").value
        both = pd.concat(values, axis=1).dropna()
        if both.empty:
            continue  # not measured in this run (e.g. repeat purchase in a short run)
        wins = both[a] > both[b] if better == "higher" else both[a] < both[b]
        low, high = wilson_interval(int(wins.sum()), len(both))
        rows.append((metric, better, where[a], where[b], len(both), float(wins.mean()), low, high))
    columns = [
        "metric",
        "better",
        f"{a}_scenario",
        f"{b}_scenario",
        "replicates",
        "win_share",
        "low",
        "high",
    ]
    return pd.DataFrame(rows, columns=columns)


def duel_shares(duel: pd.DataFrame) -> pd.DataFrame:
    """:func:`channel_duel` for reading: the share and its interval as percentages."""
    share = [f"{r.win_share:.0%} [{r.low:.0%}, {r.high:.0%}]" for r in duel.itertuples()]
    return duel.drop(columns=["low", "high"]).assign(win_share=share)


def distinct_draws(draws: Sequence[Mapping[str, Any]]) -> int:
    """How many different parameter sets a list of posterior draws holds."""
    return len({json.dumps(dict(d), sort_keys=True) for d in draws})


def event_days(params: dict[str, Any]) -> dict[str, int]:
    """The events a scenario schedules, by name and day."""
    events = params.get("events", {})
    return {k.removesuffix("_day"): events[k] for k in EVENT_KEYS if events.get(k) is not None}


def draw_figures(res: Results, folder: Path) -> dict[str, Path]:
    """Draw the standard figures into ``folder`` (PNG); returns them by name."""
    folder.mkdir(parents=True, exist_ok=True)
    names = res.scenarios
    consumers = {
        s["name"]: s["parameters"]["world"]["consumers"] for s in res.manifest["scenarios"]
    }
    figures = {
        "reach": plots.reach_over_time(res.timeseries, names, consumers),
        "funnel": plots.funnel(res.summary, names),
        "return_rates": plots.rate_by_channel(
            res.summary, names, "return_rate", "Return rate (returns / delivered orders)"
        ),
        "conversion": plots.rate_by_channel(
            res.summary,
            names,
            "visit_conversion",
            "Orders per visit (session watched, post opened, search)",
        ),
        "costs": plots.cost_breakdown(res.summary, names),
        "trust": plots.trust_over_time(res.timeseries, names),
    }
    if res.owners["earnings"].sum() > 0:
        figures["owner_earnings"] = plots.owner_earnings_lorenz(res.owners, names)
    if "joined_day" in res.owners and len(res.owners):
        days = {s["name"]: s["parameters"]["world"]["days"] for s in res.manifest["scenarios"]}
        figures["owner_network"] = plots.owner_network(res.timeseries, res.owners, names, days)
    for s in res.manifest["scenarios"]:
        days = event_days(s["parameters"])
        if days:
            figures[f"events_{s['name']}"] = plots.event_before_after(
                res.timeseries, s["name"], days
            )
    paths = {}
    for name, fig in figures.items():
        path = folder / f"{name}.png"
        fig.savefig(path)
        plt.close(fig)
        paths[name] = path
    return paths


def _markdown_table(df: pd.DataFrame) -> str:
    cols = ["metric", "channel", *df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for (metric, ch), row in df.iterrows():
        lines.append("| " + " | ".join([metric, ch, *row.astype(str)]) + " |")
    return "\n".join(lines)


@dataclass
class Explained:
    """One explanation saved in a results folder, ``explain/NAME/``
    (see :mod:`analysis.explain`)."""

    name: str
    folder: Path
    table: pd.DataFrame  # explain.csv
    manifest: dict[str, Any]  # its manifest.json ({} if missing)

    @property
    def mode(self) -> str:
        if "mode" in self.manifest:
            return self.manifest["mode"]
        return "channels" if (self.table.part == STRUCTURE).any() else "scenarios"

    @property
    def start(self) -> str:
        return self.manifest.get("start", "start")

    @property
    def end(self) -> str:
        return self.manifest.get("end", "end")

    @property
    def parts(self) -> list[str]:
        return [p for p in dict.fromkeys(self.table.part) if p != TOTAL]


def load_explanations(folder: str | Path, order: list[str] | None = None) -> list[Explained]:
    """The explanations in ``folder/explain/*/explain.csv``, ordered by the position in
    ``order`` (the compared scenarios) of the scenario each one explains, then by name."""
    found = []
    for csv in sorted(Path(folder, EXPLAIN).glob("*/explain.csv")):
        path = csv.parent / "manifest.json"
        manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        found.append(Explained(csv.parent.name, csv.parent, pd.read_csv(csv), manifest))
    order = order or []

    def key(e: Explained) -> tuple[int, str]:
        names = [s.get("name") for s in e.manifest.get("scenarios", [])]
        last = names[-1] if names else None
        return (order.index(last) if last in order else len(order), e.name)

    return sorted(found, key=key)


def explanation_table(e: Explained) -> pd.DataFrame:
    """An explanation as the report shows it: a row per metric (and channel, in scenario
    mode), the columns of its waterfall: start value, each part (value ±half-width of its 95%
    interval), end value, total. Rows whose start and end are both undefined are left out."""
    t = e.table
    rows, index = [], []
    for (metric, channel), g in t.groupby(["metric", "channel"], sort=False):
        first = g.iloc[0]
        if not (np.isfinite(first["start"]) or np.isfinite(first["end"])):
            continue  # the channel sells in neither
        by_part = g.drop_duplicates("part").set_index("part")

        def cell(part: str, g: pd.DataFrame = by_part, metric: str = metric) -> str:
            if part not in g.index:
                return "-"
            r = g.loc[part]
            return format_value(metric, r["value"], True, (r["hi"] - r["lo"]) / 2)

        row = {f"{e.start} (start)": format_value(metric, first["start"])}
        row.update({p: cell(p) for p in e.parts})
        row[f"{e.end} (end)"] = format_value(metric, first["end"])
        row[TOTAL] = cell(TOTAL)
        rows.append(row)
        index.append(metric if e.mode == "channels" else (metric, channel))
    if e.mode == "channels":
        return pd.DataFrame(rows, index=pd.Index(index, name="metric"))
    names = ["metric", "channel"]
    return pd.DataFrame(rows, index=pd.MultiIndex.from_tuples(index, names=names))


def _explain_reading(explained: list[Explained]) -> str:
    modes = {e.mode for e in explained}
    text = (
        "Each difference is split into parts, one per mechanism group, with exact Shapley "
        "values: every coalition of the groups (2^k of them) runs on the same replicate seeds "
        "(common random numbers), a group's part is its contribution averaged over every order "
        "of switching the groups on, and the parts add up exactly to the total. Read a row "
        "like the waterfall below it: the start value, the parts, the end value; total = end - "
        "start. Shares are in percent, their parts in percentage points; ± is the half-width "
        "of the 95% interval over replicates (none with one replicate)."
    )
    if "channels" in modes:
        text += (
            " In channel mode (one scenario, metric(owners) - metric(streamer)) a group is a "
            "set of counterfactual swaps giving the streamer what the owners have (hype, terms, "
            "trust, the platform's brand screening) or lifting a limit she works under (her "
            "vetting team's and the brands' desks' capacity); "
            f"**{STRUCTURE}** is what the swaps cannot explain (the total minus the parts): "
            "reach and format (who sees a product, how often, through what) and what no "
            "parameter can give the streamer (the owner's own after-sales, fit and advice)."
        )
    if "scenarios" in modes:
        text += (
            " In scenario mode (B - A) a group holds the parameters in which the two scenarios "
            f"differ; those in no group form **{OTHER}**."
        )
    switches = any(
        str(p).startswith("channels.")
        for e in explained
        for p in e.manifest.get("players", {}).get(OTHER, {})
    )
    if switches:
        text += (
            " Here the scenarios switch channels on or off, which no mechanism group holds, so "
            f"**{OTHER}** is the whole channel mix; to see which mechanisms separate owners and "
            "the streamer, compare with a scenario in which both sell (e.g. hybrid) and "
            "--explain."
        )
    return text


def _explain_heading(e: Explained) -> str:
    if e.mode == "channels":
        where = e.manifest.get("scenarios", [{}])[0].get("name", e.name)
        return f"{where}: why {e.end} differ from {e.start}"
    return f"{e.start} to {e.end}: why {e.end} differs from {e.start}"


def _explain_setting(e: Explained, res: Results) -> str:
    m = e.manifest
    reps = m.get("replicates")
    if reps is None:
        return ""
    seeds, ours = m.get("seeds", []), res.manifest.get("seeds", [])
    if seeds and seeds == ours:
        on = "the comparison's replicate seeds"
    elif seeds and seeds == ours[: len(seeds)]:
        on = "the comparison's first " + (
            "replicate seed" if len(seeds) == 1 else f"{len(seeds)} replicate seeds"
        )
    else:
        on = f"base seed {m.get('seed')}"
    k = len(m.get("players", {}))
    c = len(m.get("coalitions", {})) or 2**k
    what = "Channel mode" if e.mode == "channels" else "Scenario mode"
    return (
        f"{what}: {_count(k, 'group')}, {_count(c, 'coalition')}, "
        f"{_count(reps, 'replicate')} each on {on}."
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _explain_parts(e: Explained) -> list[tuple[str, str]]:
    """Each part and the parameter changes it stands for (from explain.csv)."""
    t = e.table[e.table.part != TOTAL].drop_duplicates("part")
    return [
        (str(r.part), "" if pd.isna(r.parameters) else str(r.parameters))
        for r in t.itertuples(index=False)
    ]


def _frame_markdown(df: pd.DataFrame) -> str:
    names = [str(n) for n in df.index.names]
    lines = ["| " + " | ".join([*names, *map(str, df.columns)]) + " |"]
    lines.append("|" + "---|" * (len(names) + len(df.columns)))
    for key, row in df.iterrows():
        keys = list(key) if isinstance(key, tuple) else [key]
        lines.append("| " + " | ".join([*map(str, keys), *row.astype(str)]) + " |")
    return "\n".join(lines)


def explain_markdown(explained: list[Explained], res: Results) -> str:
    """The section "Why they differ" of report.md ("" without explanations)."""
    if not explained:
        return ""
    md = ["## Why they differ", "", _explain_reading(explained), ""]
    for e in explained:
        md += [f"### {_explain_heading(e)}", ""]
        setting = _explain_setting(e, res)
        md += [setting, ""] if setting else []
        md += [_frame_markdown(explanation_table(e)), ""]
        md += [f"- **{p}**: {text}" for p, text in _explain_parts(e) if text]
        md.append("")
        png = e.folder / "explain.png"
        if png.is_file():
            md += [f"![Waterfall: {e.name}]({EXPLAIN}/{e.name}/explain.png)", ""]
    return "\n".join(md) + "\n"


def _bold(text: str) -> str:
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", html.escape(text))


def explain_html(explained: list[Explained], res: Results) -> str:
    """The section "Why they differ" for report.html, the waterfalls embedded."""
    if not explained:
        return ""
    body = ["<h2>Why they differ</h2>", f"<p>{_bold(_explain_reading(explained))}</p>"]
    for e in explained:
        body.append(f"<h3>{html.escape(_explain_heading(e))}</h3>")
        setting = _explain_setting(e, res)
        if setting:
            body.append(f"<p>{html.escape(setting)}</p>")
        body.append(explanation_table(e).to_html(classes="results", border=0))
        items = [
            f"<li><b>{html.escape(p)}</b>: {html.escape(text)}</li>"
            for p, text in _explain_parts(e)
            if text
        ]
        if items:
            body.append(f"<ul>{''.join(items)}</ul>")
        png = e.folder / "explain.png"
        if png.is_file():
            data = base64.b64encode(png.read_bytes()).decode()
            body.append(
                f'<figure><img alt="Waterfall: {html.escape(e.name)}" '
                f'src="data:image/png;base64,{data}"/>'
                f"<figcaption>{html.escape(e.name)}: waterfall</figcaption></figure>"
            )
    return "".join(body)


def _posterior_duel(res: Results) -> tuple[str, str]:
    """The report's section on the verdict under parameter uncertainty (Markdown, HTML): when
    each replicate drew its parameters from a calibration's posterior."""
    draws = res.manifest.get("posterior_draws")
    if not draws:
        return "", ""
    duel = channel_duel(res.summary, TABLE_METRICS)
    if duel.empty:
        return "", ""
    heading = "Owners against the streamer across the posterior"
    text = (
        f"Each of the {len(draws)} replicates drew its uncertain parameters from the "
        f"calibration's posterior ({distinct_draws(draws)} distinct particles; the same draw "
        "for every scenario of that replicate), so the intervals above include parameter "
        "uncertainty. How often the owners' channel beats the streamer's, draw by draw, with "
        "the share's 95% interval (each draw is one run: seed noise pulls small differences "
        "towards half):"
    )
    shown = duel_shares(duel)
    md = f"## {heading}\n\n{text}\n\n{_frame_markdown(shown.set_index('metric'))}\n\n"
    html = f"<h2>{heading}</h2><p>{text}</p>" + shown.to_html(index=False, border=0)
    return md, html


def write_report(
    folder: str | Path, res: Results | None = None, source: str | Path | None = None
) -> tuple[Path, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into a results folder.

    ``source`` is the results folder whose ``explain/`` holds the explanations (default:
    ``folder``; ``fishschool report`` writes into a temporary folder and reads the saved one).
    """
    folder = Path(folder)
    res = res or Results.load(source or folder)
    figures = draw_figures(res, folder / "figures")
    table = comparison_table(res.summary, res.scenarios)
    explained = load_explanations(source or folder, res.scenarios)
    m = res.manifest
    intro = [f"# fishschool report: {' vs '.join(res.scenarios)}", ""]
    intro.append(
        f"{m['replicates']} replicates per scenario, base seed {m['seed']}"
        + (", common random numbers across scenarios" if len(res.scenarios) > 1 else "")
        + f"; fishschool {m['versions']['fishschool']}, {m['created']}."
    )
    intro.append("")
    for s in m["scenarios"]:
        w, owners = s["parameters"]["world"], s["parameters"]["owners"]["count"]
        intro.append(
            f"- **{s['name']}**: {s['question'] or '(no question given)'} "
            f"({w['consumers']:,} consumers, {owners:,} owners, {w['days']} days)"
        )
    intro += [
        "",
        "## Side by side",
        "",
        "Mean over replicates [95% interval]"
        + (
            f"; differences are paired by replicate against **{res.scenarios[0]}**."
            if len(res.scenarios) > 1
            else "."
        ),
        "",
    ]
    md = "\n".join(intro) + "\n" + _markdown_table(table) + "\n\n"
    duel_md, duel_html = _posterior_duel(res)
    md += duel_md + explain_markdown(explained, res) + "## Figures\n\n"
    captions = {
        "reach": "Reach over time",
        "funnel": "Conversion funnel",
        "conversion": "Orders per visit",
        "return_rates": "Return rates",
        "costs": "Cost per net GMV",
        "trust": "Trust over time",
        "owner_earnings": "Owner earnings",
        "owner_network": "The owner network: owners, members, survival",
    }
    for name, path in figures.items():
        caption = captions.get(name, name.replace("_", " "))
        md += f"### {caption}\n\n![{caption}](figures/{path.name})\n\n"
    md += (
        "## Reading the numbers\n\n"
        + "".join(
            f"- **{name}**: {METRICS[name].meaning} ({METRICS[name].unit}; "
            f"{METRICS[name].better} is better)\n"
            for name in TABLE_METRICS
        )
        + "\nA visit shows a different number of products in each channel (products_per_visit), "
        "so compare conversion per exposure and monthly_buyer_conversion (buyers per consumer "
        "reached in a month) as well as per visit. Money is in RMB at model scale "
        "(docs/ODD.md, 2.3).\n"
    )
    md_path = folder / "report.md"
    md_path.write_text(md, encoding="utf-8")
    html_path = folder / "report.html"
    page = _html(md, table, figures, duel_html + explain_html(explained, res))
    html_path.write_text(page, encoding="utf-8")
    return md_path, html_path


def _html(md: str, table: pd.DataFrame, figures: dict[str, Path], explain: str = "") -> str:
    """A self-contained HTML page: the report's text, its table, the explanations (an HTML
    fragment) and the figures embedded."""
    head = md.split("## Side by side")[0].strip().splitlines()
    title = html.escape(head[0].lstrip("# "))
    body = [f"<h1>{title}</h1>"]
    body += [
        f"<p>{html.escape(line.lstrip('- ')).replace('**', '')}</p>"
        for line in head[1:]
        if line.strip()
    ]
    body.append("<h2>Side by side</h2>")
    body.append(table.to_html(classes="results", border=0))
    if explain:
        body.append(explain)
    body.append("<h2>Figures</h2>")
    for name, path in figures.items():
        data = base64.b64encode(path.read_bytes()).decode()
        body.append(
            f'<figure><img alt="{name}" src="data:image/png;base64,{data}"/>'
            f"<figcaption>{name}</figcaption></figure>"
        )
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table.results{border-collapse:collapse;font-size:13px}"
        "table.results td,table.results th"
        "{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}"
        "img{max-width:100%}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{style}</style></head><body>{''.join(body)}</body></html>"
    )


def write_results(
    out: str | Path,
    exp: Experiment,
    explanations: Sequence[tuple[str, Explanation]] = (),
    command: list[str] | None = None,
    *,
    force: bool = False,
    report: bool = True,
) -> Path:
    """A results folder, all or nothing (:func:`sim.experiments.output.atomic_folder`): the
    experiment's tables and manifest, each explanation in ``explain/NAME/`` and, unless
    ``report`` is false, the figures and report. Returns ``out``."""
    from analysis.explain import write_explanation
    from sim.experiments.output import atomic_folder, write_tables

    with atomic_folder(out, force=force) as tmp:
        write_tables(exp, tmp, command)
        for name, e in explanations:
            folder = tmp / "explain" / name
            folder.mkdir(parents=True)
            write_explanation(e, folder, command)
        if report:
            # the manifest as written, so fishschool report redraws the same report
            manifest = json.loads((tmp / "manifest.json").read_text(encoding="utf-8"))
            write_report(tmp, Results(exp.summary, exp.timeseries, exp.owners, manifest))
    return Path(out)
