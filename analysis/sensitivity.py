"""Sensitivity and robustness analysis of a sweep (``fishschool analyze DIR``).

Reads a sweep folder (``sweep.parquet`` and ``manifest.json``, see
:mod:`sim.experiments.sweep`) and writes
into ``DIR/analysis/``:

* ``response_METRIC.png``: each metric against each varied parameter, per channel (points
  are replicate means; the line is the mean within bins of the parameter);
* for Sobol designs, ``sobol.csv`` and ``sobol_METRIC_CHANNEL.png``: first- and total-order
  indices with 95% confidence intervals (SALib, Saltelli/Jansen estimators with bootstrap), and
  ``sobol_convergence.csv`` with ``convergence_METRIC_CHANNEL.png``: the same indices on the
  first 4, 8, ... base samples, to see whether they have settled; ``warnings.md`` says where
  the intervals are wider than the indices, or an index leaves [0, 1] beyond its interval;
* ``discovery.md``, ``prim_METRIC.csv`` and ``prim_METRIC.png``: scenario discovery (PRIM,
  :mod:`analysis.discovery`), the region of the parameters where the streamer beats the
  owners on each metric, with its coverage and density;
* with replicates, ``noise.csv``: the share of each metric's variance that is replicate noise
  (within a point) rather than the parameters (between points);
* for Morris designs, ``morris.csv`` and figures: mu* (with interval) and sigma;
* ``robustness.csv`` and ``robustness.md``: for each lever setting, across the uncertainty
  space, how often and by how much the owners channel beats the streamer channel on each
  metric, and each strategy's regret (how much worse than the better one it does: mean and
  worst case).

References: Saltelli et al. (2010) for the Sobol estimators; Morris (1991), Campolongo et al.
(2007); Lempert, Popper & Bankes (2003) for regret-based robustness.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from analysis.plots import CHANNEL_COLOURS
from sim.world.metrics import METRICS

STRATEGIES = ("owners", "streamer")


def load(folder: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A sweep's data and manifest."""
    folder = Path(folder)
    if not (folder / "sweep.parquet").is_file() or not (folder / "manifest.json").is_file():
        raise FileNotFoundError(f"{folder}: not a sweep folder (no sweep.parquet or manifest.json)")
    data = pd.read_parquet(folder / "sweep.parquet")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    return data, manifest


def point_means(data: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Replicate means: one row per point, channel and metric, with the parameters."""
    names = [f["name"] for f in manifest["factors"]]
    return (
        data.groupby(["point_id", "channel", "metric", *names], sort=True, dropna=False)["value"]
        .mean()
        .reset_index()
    )


def _response_vector(means: pd.DataFrame, metric: str, channel: str, n_points: int) -> np.ndarray:
    """Outcome per point in design order (NaN where a point is missing)."""
    part = means[(means.metric == metric) & (means.channel == channel)]
    y = np.full(n_points, np.nan)
    y[part.point_id.to_numpy()] = part.value.to_numpy()
    return y


def _problem(manifest: dict[str, Any]) -> dict[str, Any]:
    factors = manifest["factors"]
    return {
        "num_vars": len(factors),
        "names": [f["name"] for f in factors],
        "bounds": [[f["low"], f["high"]] for f in factors],
    }


def _sobol_layout(manifest: dict[str, Any]) -> tuple[int, bool]:
    """Rows per base sample and whether second order was sampled (sweeps made before the
    sampler dropped second order recorded no ``second_order``: they sampled it)."""
    d = len(manifest["factors"])
    second = manifest.get("second_order", True)
    return (2 * d + 2 if second else d + 2), second


def _sobol(problem: dict[str, Any], y: np.ndarray, second: bool, seed: int) -> dict[str, Any]:
    from SALib.analyze import sobol

    return sobol.analyze(problem, y, calc_second_order=second, seed=seed)


def sobol_convergence(
    means: pd.DataFrame, manifest: dict[str, Any], steps: int | None = None
) -> pd.DataFrame:
    """Sobol indices on the first n base samples, for n = N, N/2, N/4, ... down to 4 (or
    ``steps`` values of n): whether the indices have settled. The first n base samples of a
    Sobol sequence are a Sobol design of their own (n a power of 2), so each n is a valid
    estimate.

    Returns ``samples, metric, channel, parameter, S1, S1_conf, ST, ST_conf``.
    """
    problem = _problem(manifest)
    per, second = _sobol_layout(manifest)
    total = manifest["samples"]
    sizes = [total]
    while sizes[-1] >= 8 and (steps is None or len(sizes) < steps):
        sizes.append(sizes[-1] // 2)
    rows = []
    for (metric, channel), _ in means.groupby(["metric", "channel"]):
        y_all = _response_vector(means, metric, channel, total * per)
        if np.isnan(y_all).any() or np.nanstd(y_all) == 0:
            continue  # a failed point, or a channel the sweep switched off: no indices
        for n in sorted(sizes):
            y = y_all[: n * per]
            if np.std(y) == 0:
                continue
            res = _sobol(problem, y, second, manifest["seed"])
            for i, name in enumerate(problem["names"]):
                rows.append(
                    (
                        n,
                        metric,
                        channel,
                        name,
                        res["S1"][i],
                        res["S1_conf"][i],
                        res["ST"][i],
                        res["ST_conf"][i],
                    )
                )
    columns = ["samples", "metric", "channel", "parameter", "S1", "S1_conf", "ST", "ST_conf"]
    return pd.DataFrame(rows, columns=columns)


def sobol_warnings(table: pd.DataFrame) -> list[str]:
    """What a reader of Sobol indices must know: per metric and channel, intervals wider than
    the largest index (the sample is too small to rank the parameters), and indices outside
    [0, 1] beyond their interval (the estimator's noise, or a model whose output is not
    well-behaved)."""
    out = []
    for (metric, channel), part in table.groupby(["metric", "channel"], sort=True):
        top = part.ST.max()
        widest = part.ST_conf.max()
        if widest > top:
            out.append(
                f"{metric} ({channel}): intervals up to ±{widest:.2f} are wider than the largest "
                f"total-order index ({top:.2f}): too few samples to rank the parameters"
            )
        for col in ("S1", "ST"):
            low, high = part[col] - part[f"{col}_conf"], part[col] + part[f"{col}_conf"]
            off = part[(low > 1) | (high < 0)]
            for r in off.itertuples():
                out.append(
                    f"{metric} ({channel}): {col} of {r.parameter} = {getattr(r, col):.2f} "
                    f"± {getattr(r, col + '_conf'):.2f} lies outside [0, 1]"
                )
    return out


def noise_share(data: pd.DataFrame) -> pd.DataFrame:
    """Per metric and channel, the share of the variance across runs that is replicate noise:
    the mean within-point variance over the total variance (0: the parameters explain all;
    near 1: the sweep mostly measures noise). Needs replicates > 1."""
    rows = []
    for (metric, channel), part in data.groupby(["metric", "channel"], sort=True):
        total = part.value.var()
        within = part.groupby("point_id").value.var().mean()
        if not np.isfinite(total) or total == 0 or not np.isfinite(within):
            continue
        rows.append((metric, channel, float(within / total), part.point_id.nunique()))
    return pd.DataFrame(rows, columns=["metric", "channel", "noise_share", "points"])


def convergence_figure(table: pd.DataFrame, metric: str, channel: str):
    """Total-order indices (with intervals) against the number of base samples."""
    part = table[(table.metric == metric) & (table.channel == channel)]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, g in part.groupby("parameter", sort=False):
        line = ax.plot(g.samples, g.ST, marker="o", label=name)[0]
        ax.fill_between(
            g.samples, g.ST - g.ST_conf, g.ST + g.ST_conf, color=line.get_color(), alpha=0.15
        )
    ax.set_xscale("log", base=2)
    ax.set_xlabel("base samples N")
    ax.set_ylabel("total-order index ST")
    ax.set_title(f"{metric} ({channel}): convergence")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig


def morris_indices(means: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Morris elementary-effect statistics (mu*, its interval, sigma) per metric and channel."""
    from SALib.analyze import morris

    problem = _problem(manifest)
    names = problem["names"]
    rows = []
    for (metric, channel), part in means.groupby(["metric", "channel"]):
        part = part.sort_values("point_id")
        n_points = manifest["samples"] * (len(names) + 1)
        if len(part) != n_points or part.value.std() == 0:
            continue
        x = part[names].to_numpy(dtype=float)
        res = morris.analyze(problem, x, part.value.to_numpy(), seed=manifest["seed"])
        for i, name in enumerate(names):
            rows.append(
                (metric, channel, name, res["mu_star"][i], res["mu_star_conf"][i], res["sigma"][i])
            )
    return pd.DataFrame(
        rows, columns=["metric", "channel", "parameter", "mu_star", "mu_star_conf", "sigma"]
    )


def _lever_settings(means: pd.DataFrame, manifest: dict[str, Any], bins: int = 3) -> pd.Series:
    """A label per point for its lever setting (ranges are cut into ``bins`` quantile bins)."""
    levers = [f for f in manifest["factors"] if f["kind"] == "lever"]
    if not levers:
        return pd.Series("all points", index=means.index)
    labels = []
    for f in levers:
        col = means[f["name"]]
        if f["values"] is not None or col.nunique() <= bins:
            labels.append(
                f["name"] + "=" + col.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
            )
        else:
            cut = pd.qcut(col.astype(float), bins, duplicates="drop", precision=3)
            labels.append(f["name"] + " in " + cut.astype(str))
    out = labels[0]
    for extra in labels[1:]:
        out = out + ", " + extra
    return out


def robustness(means: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    """Owners versus streamer for each lever setting, across the uncertainty space.

    For every point both channels' metrics are compared in the direction the metric declares
    (:data:`sim.world.metrics.METRICS`; metrics where neither is better, such as a cost kind
    that only moves money, are left out; a value that is not a declared metric, as in the
    Ishigami test sweep, counts as higher is better). Per lever setting: the share of
    uncertainty samples where owners win, the mean margin (owners minus streamer, in the
    metric's units), and each strategy's regret (how far below the better strategy it falls):
    mean and maximum.
    """
    wide = means[means.channel.isin(STRATEGIES)].pivot_table(
        index=["point_id", "metric"], columns="channel", values="value"
    )
    if not set(STRATEGIES) <= set(wide.columns):
        return pd.DataFrame()
    params = means.drop_duplicates("point_id").set_index("point_id")
    setting = _lever_settings(params.reset_index(), manifest)
    setting.index = params.index
    wide = wide.reset_index()
    wide["setting"] = setting.loc[wide.point_id].to_numpy()
    rows = []
    for (label, metric), g in wide.groupby(["setting", "metric"], sort=True):
        better = METRICS[metric].better if metric in METRICS else "higher"
        if better not in ("higher", "lower"):
            continue
        sign = -1.0 if better == "lower" else 1.0
        own, streamer = sign * g["owners"], sign * g["streamer"]
        best = np.maximum(own, streamer)
        rows.append(
            {
                "lever_setting": label,
                "metric": metric,
                "better": "lower" if sign < 0 else "higher",
                "samples": len(g),
                "owners_win_share": float((own > streamer).mean()),
                "mean_margin_owners_minus_streamer": float((g["owners"] - g["streamer"]).mean()),
                "owners_mean_regret": float((best - own).mean()),
                "owners_max_regret": float((best - own).max()),
                "streamer_mean_regret": float((best - streamer).mean()),
                "streamer_max_regret": float((best - streamer).max()),
            }
        )
    return pd.DataFrame(rows)


def response_figure(means: pd.DataFrame, manifest: dict[str, Any], metric: str, bins: int = 8):
    """One metric against each varied parameter, one colour per channel."""
    factors = [f["name"] for f in manifest["factors"]]
    part = means[means.metric == metric]
    fig, axes = plt.subplots(1, len(factors), figsize=(3.6 * len(factors), 3.4), squeeze=False)
    for ax, name in zip(axes[0], factors, strict=True):
        for channel, g in part.groupby("channel"):
            if g.value.abs().sum() == 0:
                continue
            colour = CHANNEL_COLOURS.get(channel, "black")
            x = pd.to_numeric(g[name], errors="coerce")
            if x.isna().all():  # categorical values
                x = g[name].astype(str)
                m = g.groupby(x)["value"].mean()
                ax.plot(m.index, m.to_numpy(), "o-", color=colour, label=channel)
                continue
            ax.scatter(x, g.value, s=6, alpha=0.35, color=colour)
            edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)))
            if edges.size > 2:
                idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
                m = g.value.groupby(idx).mean()
                centre = (edges[:-1] + edges[1:]) / 2
                ax.plot(centre[m.index], m.to_numpy(), "-", color=colour, lw=2, label=channel)
        ax.set_xlabel(name)
    axes[0][0].set_ylabel(metric.replace("_", " "))
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle(f"{metric}: response to each parameter")
    fig.tight_layout()
    return fig


def indices_figure(table: pd.DataFrame, metric: str, channel: str, kind: str):
    """Bar chart of Sobol (S1, ST) or Morris (mu*) indices with their intervals."""
    part = table[(table.metric == metric) & (table.channel == channel)]
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(part)), 3.4))
    x = np.arange(len(part))
    if kind == "sobol":
        ax.bar(x - 0.2, part.S1, 0.4, yerr=part.S1_conf, label="first order", capsize=3)
        ax.bar(x + 0.2, part.ST, 0.4, yerr=part.ST_conf, label="total", capsize=3)
        ax.set_ylabel("Sobol index")
    else:
        ax.bar(x, part.mu_star, 0.5, yerr=part.mu_star_conf, capsize=3, label="mu*")
        ax.plot(x, part.sigma, "k^", label="sigma")
        ax.set_ylabel("elementary effect")
    ax.set_xticks(x, part.parameter, rotation=20, fontsize=8)
    ax.set_title(f"{metric} ({channel})")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def _markdown(df: pd.DataFrame) -> str:
    """A plain Markdown table (numbers to 3 significant digits)."""

    def cell(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _discovery(means: pd.DataFrame, manifest: dict[str, Any]) -> list:
    """Scenario discovery for every metric with a better direction, when the sweep has both
    strategies' channels."""
    from analysis.discovery import discover

    if not set(STRATEGIES) <= set(means.channel):
        return []
    metrics = [
        m
        for m in sorted(means.metric.unique())
        if m in METRICS and METRICS[m].better in ("higher", "lower")
    ]
    return [discover(means, manifest, m) for m in metrics]


def analyze(folder: str | Path) -> list[Path]:
    """Write the response figures, sensitivity indices and robustness table of a sweep."""
    folder = Path(folder)
    data, manifest = load(folder)
    if data.empty:
        raise FileNotFoundError(f"{folder}: the sweep has no finished runs yet")
    out = folder / "analysis"
    out.mkdir(exist_ok=True)
    means = point_means(data, manifest)
    written: list[Path] = []

    def save(fig, name: str) -> None:
        path = out / name
        fig.savefig(path)
        plt.close(fig)
        written.append(path)

    for metric in sorted(means.metric.unique()):
        save(response_figure(means, manifest, metric), f"response_{metric}.png")
    if manifest["design"] in ("sobol", "morris"):
        if manifest["design"] == "sobol":
            steps = sobol_convergence(means, manifest)
            table = steps[steps.samples == manifest["samples"]].drop(columns="samples")
            path = out / "sobol_convergence.csv"
            steps.to_csv(path, index=False)
            written.append(path)
            for (metric, channel), _ in steps.groupby(["metric", "channel"]):
                fig = convergence_figure(steps, metric, channel)
                save(fig, f"convergence_{metric}_{channel}.png")
            warnings = sobol_warnings(table)
            path = out / "warnings.md"
            path.write_text(
                "# What to keep in mind reading the Sobol indices\n\n"
                + (
                    "\n".join(f"- {w}" for w in warnings)
                    or "Nothing: the intervals are narrower "
                    "than the indices and every index lies in [0, 1]."
                )
                + "\n",
                encoding="utf-8",
            )
            written.append(path)
        else:
            table = morris_indices(means, manifest)
        path = out / f"{manifest['design']}.csv"
        table.to_csv(path, index=False)
        written.append(path)
        for (metric, channel), _ in table.groupby(["metric", "channel"]):
            save(
                indices_figure(table, metric, channel, manifest["design"]),
                f"{manifest['design']}_{metric}_{channel}.png",
            )
    if manifest.get("replicates", 1) > 1:
        path = out / "noise.csv"
        noise_share(data).to_csv(path, index=False)
        written.append(path)
    found = _discovery(means, manifest)
    if found:
        from analysis.discovery import describe, trajectory_figure

        for d in found:
            if d.box is not None:
                path = out / f"prim_{d.metric}.csv"
                d.box.limits.to_csv(path, index=False)
                written.append(path)
                save(trajectory_figure(d), f"prim_{d.metric}.png")
        path = out / "discovery.md"
        path.write_text(
            "# Where the streamer beats the owners (PRIM scenario discovery)\n\n"
            + "\n\n".join(describe(d) for d in found)
            + "\n",
            encoding="utf-8",
        )
        written.append(path)
    robust = robustness(means, manifest)
    if not robust.empty:
        path = out / "robustness.csv"
        robust.to_csv(path, index=False)
        md = out / "robustness.md"
        md.write_text(
            "# Owners versus streamer across the uncertainty space\n\n" + _markdown(robust) + "\n",
            encoding="utf-8",
        )
        written += [path, md]
    return written
