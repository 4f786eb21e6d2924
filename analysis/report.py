"""Reports of an experiment: the side-by-side table, figures, report.md and report.html.

Everything here reads the saved tables (or the same tables in memory), so ``fishschool report
DIR`` redraws exactly what ``fishschool run`` or ``compare`` drew.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis import plots
from analysis.stats import (
    channel_presence,
    channels_present,
    paired_differences,
    scenario_means,
)
from sim.channels import ALL
from sim.metrics import METRICS

TABLE_METRICS = (
    "reach_share",
    "conversion",
    "products_per_visit",
    "visit_conversion",
    "monthly_buyer_conversion",
    "return_rate",
    "defect_share",
    "net_gmv",
    "brand_profit",
    "profit_per_order",
    "satisfaction",
    "repeat_purchase_rate",
)
PERCENT = {name for name, m in METRICS.items() if m.is_share}  # shown as percentages
EVENT_KEYS = ("streamer_removed_day", "churn_wave_day", "defective_batch_day")


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


def write_report(folder: str | Path, res: Results | None = None) -> tuple[Path, Path]:
    """Write ``figures/*.png``, ``report.md`` and ``report.html`` into a results folder."""
    folder = Path(folder)
    res = res or Results.load(folder)
    figures = draw_figures(res, folder / "figures")
    table = comparison_table(res.summary, res.scenarios)
    m = res.manifest
    intro = [f"# fishschool report: {' vs '.join(res.scenarios)}", ""]
    intro.append(
        f"{m['replicates']} replicates per scenario, base seed {m['seed']}"
        + (", common random numbers across scenarios" if len(res.scenarios) > 1 else "")
        + f"; fishschool {m['versions']['fishschool']}, {m['created']}."
    )
    intro.append("")
    for s in m["scenarios"]:
        w = s["parameters"]["world"]
        intro.append(
            f"- **{s['name']}**: {s['question'] or '(no question given)'} "
            f"({w['consumers']:,} consumers, {w['owners']:,} owners, {w['days']} days)"
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
    md = "\n".join(intro) + "\n" + _markdown_table(table) + "\n\n## Figures\n\n"
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
    html_path.write_text(_html(md, table, figures), encoding="utf-8")
    return md_path, html_path


def _html(md: str, table: pd.DataFrame, figures: dict[str, Path]) -> str:
    """A self-contained HTML page: the report's text, its table and the figures embedded."""
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
