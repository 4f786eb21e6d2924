"""Standard figures of an experiment. Each function draws one figure and returns it.

Inputs are the tidy tables of an experiment (see :mod:`sim.experiments.experiment`):
``timeseries`` (one row
per scenario, replicate, day and channel), ``summary`` (scenario, replicate, channel, metric,
value) and ``owners`` (one row per scenario, replicate and owner). Channels keep one colour
everywhere; scenarios one line style.

The social graph is drawn by one painter, :class:`GraphPainter`, over one sample,
:func:`graph_sample`: :func:`social_graph` is the painter drawing once, the browser view
(:mod:`analysis.viz`) the same painter redrawn after every day.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

# No matplotlib.use() here: a notebook keeps its inline backend; the command line chooses Agg.
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import PIL.Image
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.stats import channel_presence, channels_present, mean_ci
from sim.world.channels import ALL, CHANNELS
from sim.world.metrics import COST_KINDS, METRICS, gini, owner_survival

if TYPE_CHECKING:
    from sim.world.model import CommerceModel

CHANNEL_COLOURS = {
    "owners": "#1b9e77",
    "streamer": "#d95f02",
    "conventional": "#7570b3",
    ALL: "#333333",
}
SCENARIO_STYLES = ["-", "--", ":", "-."]
plt.rcParams.update({"figure.dpi": 110, "axes.spines.top": False, "axes.spines.right": False})


def _style(i: int) -> str:
    return SCENARIO_STYLES[i % len(SCENARIO_STYLES)]


def _band(ax, ts: pd.DataFrame, metric: str, colour: str, style: str, label: str) -> None:
    """Mean over replicates with a 95% band, against day."""
    g = ts.groupby("day")[metric]
    mean = g.mean()
    sd = g.std(ddof=1).fillna(0.0)
    n = g.count().clip(lower=1)
    half = 1.96 * sd / np.sqrt(n)
    ax.plot(mean.index, mean.to_numpy(), style, color=colour, label=label, lw=1.8)
    ax.fill_between(
        mean.index,
        (mean - half).to_numpy(),
        (mean + half).to_numpy(),
        color=colour,
        alpha=0.15,
        lw=0,
    )


def reach_over_time(
    timeseries: pd.DataFrame, scenarios: list[str], consumers: int | dict[str, int]
) -> Figure:
    """Share of consumers reached so far, per channel, one line style per scenario.

    ``consumers``: the population, one number or one per scenario.
    """
    presence = channel_presence(timeseries)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.6), sharey=True)
    for ax, ch in zip(axes, [*CHANNELS, ALL], strict=True):
        for i, sc in enumerate(scenarios):
            if not presence.get((sc, ch), True):
                continue  # the channel is switched off in this scenario
            ts = timeseries[(timeseries.scenario == sc) & (timeseries.channel == ch)].copy()
            ts["reach"] = ts["reach"] / (
                consumers[sc] if isinstance(consumers, dict) else consumers
            )
            _band(ax, ts, "reach", CHANNEL_COLOURS[ch], _style(i), sc)
        ax.set_title(ch)
        ax.set_xlabel("day")
    axes[0].set_ylabel("share of consumers reached")
    axes[0].legend(frameon=False, fontsize=8)
    fig.suptitle("Reach over time (mean and 95% band over replicates)")
    fig.tight_layout()
    return fig


def funnel(summary: pd.DataFrame, scenarios: list[str]) -> Figure:
    """Visits, exposures, orders, delivered and kept orders per channel (log scale)."""
    stages = ["visits", "exposures", "orders", "delivered", "kept"]
    channels = channels_present(summary)
    fig, axes = plt.subplots(
        1,
        max(1, len(channels)),
        figsize=(4.5 * max(1, len(channels)), 3.8),
        sharey=True,
        squeeze=False,
    )
    means = summary.groupby(["scenario", "channel", "metric"])["value"].mean()
    width = 0.8 / max(1, len(scenarios))
    for ax, ch in zip(axes[0], channels, strict=False):
        for i, sc in enumerate(scenarios):
            get = lambda m, sc=sc, ch=ch: means.get((sc, ch, m), np.nan)  # noqa: E731
            values = [
                get("visits"),
                get("exposures"),
                get("orders"),
                get("delivered"),
                get("delivered") - get("returns"),
            ]
            x = np.arange(len(stages)) + (i - (len(scenarios) - 1) / 2) * width
            ax.bar(
                x,
                values,
                width,
                color=CHANNEL_COLOURS[ch],
                alpha=1 - 0.25 * i,
                label=sc,
                hatch="//" if i % 2 else None,
                edgecolor="white",
            )
        ax.set_yscale("log")
        ax.set_xticks(np.arange(len(stages)), stages, rotation=30)
        ax.set_title(ch)
    axes[0][0].set_ylabel("count over the run (mean of replicates)")
    axes[0][0].legend(frameon=False, fontsize=8)
    fig.suptitle("Conversion funnel")
    fig.tight_layout()
    return fig


def rate_by_channel(summary: pd.DataFrame, scenarios: list[str], metric: str, title: str) -> Figure:
    """A rate per channel and scenario with 95% intervals over replicates."""
    channels = channels_present(summary)
    fig, ax = plt.subplots(figsize=(7, 3.8))
    width = 0.8 / max(1, len(scenarios))
    for i, sc in enumerate(scenarios):
        for j, ch in enumerate(channels):
            v = summary[
                (summary.scenario == sc) & (summary.channel == ch) & (summary.metric == metric)
            ]["value"]
            m, lo, hi = mean_ci(v.to_numpy())
            x = j + (i - (len(scenarios) - 1) / 2) * width
            err = [[m - lo], [hi - m]] if np.isfinite(lo) else None
            ax.bar(
                x,
                100 * m,
                width,
                color=CHANNEL_COLOURS[ch],
                alpha=1 - 0.25 * i,
                hatch="//" if i % 2 else None,
                edgecolor="white",
                label=sc if j == 0 else None,
            )
            if err is not None:
                ax.errorbar(x, 100 * m, yerr=100 * np.array(err), color="black", capsize=3, lw=1)
            ax.text(x, 100 * m, f"{100 * m:.1f}%", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(channels)), channels)
    ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def cost_breakdown(summary: pd.DataFrame, scenarios: list[str]) -> Figure:
    """Brand cost by kind as a share of net GMV, per channel and scenario."""
    channels = channels_present(summary)
    means = summary.groupby(["scenario", "channel", "metric"])["value"].mean()
    labels, stacks = [], []
    for sc in scenarios:
        for ch in channels:
            net = means.get((sc, ch, "net_gmv"), np.nan)
            if not net or np.isnan(net):
                continue
            labels.append(f"{ch}\n{sc}")
            stacks.append([means.get((sc, ch, k), 0.0) / net for k in COST_KINDS])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.8))
    bottom = np.zeros(len(labels))
    colours = plt.get_cmap("Set2").colors
    for k, kind in enumerate(COST_KINDS):
        vals = np.array([s[k] for s in stacks]) if stacks else np.zeros(0)
        ax.bar(
            range(len(labels)),
            100 * vals,
            bottom=100 * bottom,
            label=kind.replace("_", " "),
            color=colours[k % len(colours)],
        )
        bottom += vals
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("brand cost, % of net GMV")
    ax.set_title("What a sale costs the brand, by kind")
    ax.legend(frameon=False, fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return fig


def trust_over_time(timeseries: pd.DataFrame, scenarios: list[str]) -> Figure:
    """Mean trust in each channel's own source over time."""
    presence = channel_presence(timeseries)
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.4), sharey=True)
    names = {
        "owners": "members in their owner",
        "streamer": "followers in the streamer",
        "conventional": "in search",
        ALL: "in friends",
    }
    for ax, ch in zip(axes, [*CHANNELS, ALL], strict=True):
        for i, sc in enumerate(scenarios):
            ts = timeseries[(timeseries.scenario == sc) & (timeseries.channel == ch)]
            if ts["trust"].notna().any() and presence.get((sc, ch), True):
                _band(ax, ts, "trust", CHANNEL_COLOURS[ch], _style(i), sc)
        ax.set_title(f"trust: {names[ch]}", fontsize=9)
        ax.set_xlabel("day")
    axes[0].set_ylabel("mean trust")
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def owner_earnings_lorenz(owners: pd.DataFrame, scenarios: list[str]) -> Figure:
    """Lorenz curves of owners' earnings (all replicates pooled), with the Gini coefficient."""
    fig, ax = plt.subplots(figsize=(5, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, label="equal earnings")
    for i, sc in enumerate(scenarios):
        e = np.sort(owners[owners.scenario == sc]["earnings"].clip(lower=0).to_numpy())
        if e.size == 0 or e.sum() <= 0:
            continue
        cum = np.r_[0, np.cumsum(e)] / e.sum()
        share = np.linspace(0, 1, cum.size)
        ax.plot(
            share,
            cum,
            _style(i),
            color=CHANNEL_COLOURS["owners"],
            label=f"{sc} (Gini {gini(e):.2f})",
        )
    ax.set_xlabel("share of owners (poorest first)")
    ax.set_ylabel("share of owners' earnings")
    ax.set_title("Owner earnings distribution")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def owner_network(
    timeseries: pd.DataFrame, owners: pd.DataFrame, scenarios: list[str], days: dict[str, int]
) -> Figure:
    """The owner network over time: active owners and members (mean and band over
    replicates), and the owners' survival curve by tenure (Kaplan-Meier, replicates pooled)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    colour = CHANNEL_COLOURS["owners"]
    for i, sc in enumerate(scenarios):
        ts = timeseries[(timeseries.scenario == sc) & (timeseries.channel == "owners")]
        if ts["active_owners"].fillna(0).max() <= 0:
            continue
        _band(axes[0], ts, "active_owners", colour, _style(i), sc)
        _band(axes[1], ts, "members", colour, _style(i), sc)
        own = owners[owners.scenario == sc]
        km = owner_survival(own["joined_day"].to_numpy(), own["quit_day"].to_numpy(), days[sc] - 1)
        axes[2].step(km.tenure, km.survival, _style(i), where="post", color=colour, label=sc)
    for ax, title in zip(
        axes,
        ("active owners", "members of active owners' groups", "owners still active"),
        strict=True,
    ):
        ax.set_title(title, fontsize=9)
    axes[0].set_xlabel("day")
    axes[1].set_xlabel("day")
    axes[2].set_xlabel("days since she became an owner")
    axes[2].set_ylim(0, 1.02)
    axes[0].legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


def event_before_after(timeseries: pd.DataFrame, scenario: str, events: dict[str, int]) -> Figure:
    """Daily orders per channel around the scenario's events (vertical lines)."""
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ts = timeseries[timeseries.scenario == scenario]
    for ch in CHANNELS:
        part = ts[ts.channel == ch]
        if part["orders"].sum() > 0:
            _band(ax, part, "orders", CHANNEL_COLOURS[ch], "-", ch)
    for name, day in events.items():
        ax.axvline(day, color="black", lw=1, ls="--")
        ax.text(day, ax.get_ylim()[1], f" {name.replace('_', ' ')}", va="top", fontsize=8)
    ax.set_xlabel("day")
    ax.set_ylabel("orders a day")
    ax.set_title(f"{scenario}: before and after")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# The social graph: one sample (chosen and laid out once per world) and one painter that colours
# it by the model's state. The static figure (:func:`social_graph`) is the painter drawing once;
# the browser view (:mod:`analysis.viz`) keeps a painter and redraws it after every day.
# ----------------------------------------------------------------------------------------------
STATE_COLOURS = (
    "#d9d9d9",
    CHANNEL_COLOURS["owners"],
    CHANNEL_COLOURS["streamer"],
    CHANNEL_COLOURS["conventional"],
    "#1f3b73",
    "#d62728",
)
GRAPH_AXES = (0.0, 0.2, 1.0, 0.74)  # the drawing's place in a figure of its own; legend below
VIEW_FIGSIZE = (6.4, 6.2)  # a painter's figure (the browser view's two images)


@dataclass(frozen=True)
class GraphSample:
    nodes: np.ndarray  # consumer ids
    xy: np.ndarray  # positions in [-1, 1]^2, (n, 2)
    segments: np.ndarray  # friendship edges inside the sample, (edges, 2, 2)


_SAMPLES: dict[tuple, GraphSample] = {}


def graph_sample(model: CommerceModel, size: int = 400, seed: int = 0) -> GraphSample:
    """A connected sample of ``size`` consumers grown breadth first from the first three
    owners (any three consumers without owners), with a spring layout: the consumers sampled,
    their positions, and the friendships inside the sample as line segments.

    Cached (16 worlds; the arrays are read-only): the graph does not change during a run and
    owners are a prefix of one permutation of the consumers, so the first three, and the
    sample, depend only on the world's seed, size and graph parameters, not on the day or the
    number of owners; the layout is computed once per world."""
    adj = model.graph
    if adj is None:
        raise ValueError("a well-mixed world has no graph to draw")
    start = model.owners.node[:3] if model.owners.m else np.arange(min(3, model.n))
    p = model.params
    key = (p.seed, p.world.consumers, p.graph, tuple(int(s) for s in start), size, seed)
    if key not in _SAMPLES:
        nodes = _breadth_first(adj, np.asarray(start, dtype=np.int64), size)
        sub = adj[nodes][:, nodes].tocoo()
        upper = sub.row < sub.col
        edges = np.c_[sub.row[upper], sub.col[upper]]
        xy = spring_layout(nodes.size, edges, seed)
        sample = GraphSample(nodes, xy, xy[edges])
        for array in (sample.nodes, sample.xy, sample.segments):
            array.flags.writeable = False
        if len(_SAMPLES) >= 16:
            _SAMPLES.pop(next(iter(_SAMPLES)))
        _SAMPLES[key] = sample
    return _SAMPLES[key]


def _breadth_first(adj, start: np.ndarray, size: int) -> np.ndarray:
    seen = np.zeros(adj.shape[0], dtype=bool)
    start = start[np.sort(np.unique(start, return_index=True)[1])]
    seen[start] = True
    parts, frontier, count = [start], start, start.size
    while frontier.size and count < size:
        nb = adj[frontier].indices
        nb = nb[~seen[nb]]
        nb = nb[np.sort(np.unique(nb, return_index=True)[1])][: size - count]
        seen[nb] = True
        parts.append(nb)
        frontier, count = nb, count + nb.size
    return np.concatenate(parts).astype(np.int64)


def spring_layout(
    n: int, edges: np.ndarray, seed: int = 0, iterations: int = 60, gravity: float = 1.5
) -> np.ndarray:
    """Fruchterman-Reingold positions in [-1, 1]^2 (dense numpy, as networkx's small-graph
    path; about a second for a thousand nodes), with a pull towards the centre so that a
    consumer without friends in the sample stays in view.

    >>> spring_layout(3, np.array([[0, 1], [1, 2]])).shape
    (3, 2)
    """
    rng = np.random.default_rng(seed)
    pos = rng.random((n, 2)).astype(np.float32)
    adj = np.zeros((n, n), dtype=np.float32)
    adj[edges[:, 0], edges[:, 1]] = adj[edges[:, 1], edges[:, 0]] = 1.0
    k = np.float32(1.5 / np.sqrt(max(n, 1)))
    t = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.sqrt((delta**2).sum(axis=-1)), 0.01)
        force = k * k / dist**2 - adj * dist / k
        disp = np.einsum("ijk,ij->ik", delta, force) - gravity * (pos - pos.mean(axis=0))
        length = np.maximum(np.sqrt((disp**2).sum(axis=-1)), 0.01)
        pos += disp * (t / length)[:, None]
        t -= 0.1 / (iterations + 1)
    pos -= pos.mean(axis=0)
    scale = np.abs(pos).max()
    return (pos / scale if scale > 0 else pos).astype(np.float64)


def day_label(model: CommerceModel) -> str:
    """How far the model has run, in the project's days (counted from 0): ``model.day`` is the
    day the last step simulated, so after the first step it is 0, and a model not yet stepped
    is before day 0 (its ``day`` is 0 too, hence ``steps``)."""
    return f"after day {model.day}" if model.steps else "before day 0"


class Painter:
    """A figure built once for a model and updated in place before each drawing. The artists
    that change every step (``animated``) are drawn over a cached background (blitting), which
    is redrawn only when :meth:`background_key` changes: a step costs tens of milliseconds.

    ``fig``: draw into this figure (its canvas must be Agg's for :meth:`png`); by default a
    figure of its own, not known to pyplot."""

    def __init__(self, fig: Figure | None = None) -> None:
        self.lock = threading.Lock()
        if fig is None:
            fig = Figure(figsize=VIEW_FIGSIZE, dpi=80)
            FigureCanvasAgg(fig)
        self.fig = fig
        self.animated: list = []
        self._background = None
        self._background_key = None

    @property
    def canvas(self):
        return self.fig.canvas

    def update(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def background_key(self):
        return None

    def figure(self) -> Figure:
        """The figure now, every artist in it (to save or show as usual)."""
        with self.lock:
            self.update()
            for artist in self.animated:
                artist.set_animated(False)
            self._background = None
            return self.fig

    def png(self) -> bytes:
        """The figure now, as PNG bytes."""
        with self.lock:
            self.update()
            key = self.background_key()
            if self._background is None or key != self._background_key:
                for artist in self.animated:
                    artist.set_animated(True)
                self.canvas.draw()
                self._background = self.canvas.copy_from_bbox(self.fig.bbox)
                self._background_key = key
            else:
                self.canvas.restore_region(self._background)
            for artist in self.animated:
                self.fig.draw_artist(artist)
            image = PIL.Image.fromarray(np.asarray(self.canvas.buffer_rgba()))
            out = io.BytesIO()
            image.save(out, format="png", compress_level=1)
            return out.getvalue()


class GraphPainter(Painter):
    """:func:`graph_sample` coloured by consumer state (:data:`~sim.world.model.CONSUMER_STATES`);
    owners are squares (white once they quit; recruits become squares as they join), the
    streamer a star linked to her followers in the sample, who are ringed in her colour. Legend
    shares are of all consumers; the title says the day (:func:`day_label`).

    ``ax``: draw into these axes (the legend goes below them); by default a figure of its own.
    """

    def __init__(
        self, model: CommerceModel, size: int = 400, seed: int = 0, ax: Axes | None = None
    ) -> None:
        from sim.world.model import CONSUMER_STATES

        super().__init__(ax.figure if ax is not None else None)
        self.model = model
        self.states = CONSUMER_STATES
        self.sample = s = graph_sample(model, size, seed)
        ax = self.ax = ax if ax is not None else self.fig.add_axes(GRAPH_AXES)
        ax.set_xlim(-1.08, 1.32)
        ax.set_ylim(-1.08, 1.08)
        ax.set_axis_off()
        ax.add_collection(LineCollection(s.segments, colors="#c8c8c8", linewidths=0.35, zorder=1))
        streamer = CHANNEL_COLOURS["streamer"]
        self.star = np.array([1.22, 0.0])
        self.links = LineCollection([], colors=streamer, linewidths=0.2, alpha=0.35, zorder=0)
        ax.add_collection(self.links)
        states = zip(STATE_COLOURS, CONSUMER_STATES, strict=True)
        handles = [_marker("o", colour, name, 7) for colour, name in states]
        self.has_streamer = model.params.channels.streamer
        if self.has_streamer:
            self.star_marker = ax.scatter(
                *self.star, marker="*", s=520, color=streamer, edgecolor="black", zorder=4
            )
            handles.append(_marker("*", streamer, "the streamer", 13))
            handles.append(_marker("o", "white", "follower (ring)", 7, edge=streamer))
        # Owners of a switched-off channel never sell: not drawn (the sample still grows
        # from their places in the graph).
        self.has_owners = model.params.channels.owners
        # Who is drawn where changes as owners join (:meth:`update` places them).
        self.dots = ax.scatter([], [], s=16, linewidths=0.7, zorder=2)
        self.squares = ax.scatter([], [], s=110, marker="s", edgecolors="black", zorder=3)
        if self.has_owners:
            owner = _marker("s", CHANNEL_COLOURS["owners"], "owner (white: quit)", 9, "black")
            handles.append(owner)
        self.legend = self.fig.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, -0.02),
            bbox_transform=ax.transAxes,
            ncols=3,
            frameon=False,
            fontsize=8,
        )
        self.title = ax.set_title("", fontsize=10)
        self.animated = [self.links, self.dots, self.squares, self.legend, self.title]
        if self.has_streamer:
            self.animated.append(self.star_marker)

    def owners_in_sample(self) -> tuple[np.ndarray, np.ndarray]:
        """Which of the sample are owners now (a mask over the sample) and their indices in
        :attr:`model.owners`; none when the owners' channel is off."""
        nodes, own = self.sample.nodes, self.model.owners
        if not self.has_owners or own.m == 0:
            return np.zeros(nodes.size, dtype=bool), np.zeros(0, dtype=np.int64)
        at = np.isin(nodes, own.node)
        order = np.argsort(own.node)
        return at, order[np.searchsorted(own.node[order], nodes[at])]

    def update(self) -> None:
        m, s = self.model, self.sample
        state = m.consumer_states()
        share = np.bincount(state, minlength=len(self.states)) / m.n
        for text, name, x in zip(self.legend.get_texts(), self.states, share, strict=False):
            text.set_text(f"{name} {x:.0%}")
        owner_at, owner_index = self.owners_in_sample()
        follows = m.consumers.follows[s.nodes]
        plain = ~owner_at
        self.dots.set_offsets(s.xy[plain])
        self.dots.set_facecolors(np.asarray(STATE_COLOURS)[state[s.nodes[plain]]])
        ring = np.where(follows[plain], CHANNEL_COLOURS["streamer"], "none")
        self.dots.set_edgecolors(ring.tolist())
        self.squares.set_offsets(s.xy[owner_at])
        active = m.owners.active[owner_index]
        self.squares.set_facecolors(np.where(active, CHANNEL_COLOURS["owners"], "white").tolist())
        if self.has_streamer:
            ends = s.xy[follows]
            self.links.set_segments(np.stack([np.broadcast_to(self.star, ends.shape), ends], 1))
            removed = not m.streamer.active
            colour = "#999999" if removed else CHANNEL_COLOURS["streamer"]
            self.star_marker.set_facecolor(colour)
            i = len(self.states)
            self.legend.legend_handles[i].set_markerfacecolor(colour)
            self.legend.get_texts()[i].set_text(
                "the streamer (removed)" if removed else "the streamer"
            )
        around = f" around {int(owner_at.sum())} owners" if self.has_owners else ""
        self.title.set_text(f"{s.nodes.size} of {m.n:,} consumers{around}, {day_label(m)}")


def _marker(shape: str, colour: str, label: str, size: float, edge: str = "none") -> Line2D:
    return Line2D(
        [],
        [],
        marker=shape,
        linestyle="none",
        markerfacecolor=colour,
        markeredgecolor=edge,
        markersize=size,
        label=label,
    )


def social_graph(
    model: CommerceModel, size: int = 400, seed: int = 0, ax: Axes | None = None
) -> Figure:
    """:class:`GraphPainter` drawn once: a sample of the social graph coloured by consumer
    state, owners as squares, the streamer's followers ringed in her colour and linked to her
    star. ``ax``: draw into these axes; by default a new (pyplot) figure."""
    if ax is None:
        ax = plt.figure(figsize=VIEW_FIGSIZE).add_axes(GRAPH_AXES)
    return GraphPainter(model, size, seed, ax=ax).figure()


def explain_waterfall(
    table: pd.DataFrame,
    channels: list[str] | None = None,
    metrics: list[str] | None = None,
) -> Figure:
    """Waterfalls of an explanation (:mod:`analysis.explain`): one panel per metric (a row) and
    channel (a column). Each starts at the start value (scenario A; in channel mode channel B),
    steps through the parts (bars: up or down by the part, with its 95% interval over
    replicates when there is one) and ends at the end value (scenario B; channel A).

    ``table`` is the tidy table of an explanation (``metric, channel, part, value, lo, hi,
    start, end``); its ``attrs`` may name the start and end (``start_label``, ``end_label``).
    Channels whose values are not defined (the channel does not sell) are left out. The value
    axis is zoomed on the path, so it need not start at zero.
    """
    metrics = metrics or list(dict.fromkeys(table.metric))
    if channels is None:
        defined = table[np.isfinite(table["start"]) & np.isfinite(table["end"])]
        channels = list(dict.fromkeys(defined.channel)) or list(dict.fromkeys(table.channel))[:1]
    start_label = table.attrs.get("start_label", "start")
    end_label = table.attrs.get("end_label", "end")
    parts = [p for p in dict.fromkeys(table.part) if p != "total"]
    fig, axes = plt.subplots(
        len(metrics),
        len(channels),
        figsize=(max(4.8, 0.75 * (len(parts) + 2)) * len(channels), 3.4 * len(metrics)),
        squeeze=False,
    )
    good, bad, neutral = "#1b9e77", "#d62728", "#4c72b0"
    for i, metric in enumerate(metrics):
        m = METRICS.get(metric)
        scale = 100.0 if m is not None and m.is_share else 1.0
        unit = " (%, parts in pp)" if scale == 100.0 else ""
        for j, ch in enumerate(channels):
            ax = axes[i][j]
            rows = table[(table.metric == metric) & (table.channel == ch)].set_index("part")
            ax.set_title(f"{metric} · {ch}", fontsize=9)
            if rows.empty or not np.isfinite(rows["start"].iloc[0] * rows["end"].iloc[0]):
                ax.text(0.5, 0.5, "not defined", ha="center", va="center", transform=ax.transAxes)
                ax.set_axis_off()
                continue
            start, end = scale * rows["start"].iloc[0], scale * rows["end"].iloc[0]
            steps = [(p, scale * rows.loc[p, "value"]) for p in parts if p in rows.index]
            path = np.cumsum([start, *[v if np.isfinite(v) else 0.0 for _, v in steps]])
            lo, hi = min(path.min(), end), max(path.max(), end)
            halves = [scale * (rows.loc[p, "hi"] - rows.loc[p, "lo"]) / 2 for p, _ in steps]
            reach = [(path[k] - h, path[k] + h) for k, h in enumerate(halves, 1) if np.isfinite(h)]
            if reach:  # whiskers widen the view up to 3 times the path's range, then are clipped
                wlo, whi = min(r[0] for r in reach), max(r[1] for r in reach)
                span = max(hi - lo, 1e-12)
                lo, hi = max(min(lo, wlo), lo - span), min(max(hi, whi), hi + span)
            pad = 0.12 * (hi - lo) if hi > lo else 0.1 * max(abs(hi), 1e-9)
            bottom = lo - pad
            base = 0.0 if bottom <= 0.0 <= hi + pad else bottom  # where start and end bars sit
            labels = [start_label, *[p for p, _ in steps], end_label]
            ax.bar(0, start - base, bottom=base, color="#999999")
            for k, (p, v) in enumerate(steps, start=1):
                if not np.isfinite(v):
                    continue
                if m is None or m.better == "neither" or v == 0:
                    colour = neutral
                else:
                    colour = good if (v > 0) == (m.better == "higher") else bad
                ax.bar(
                    k,
                    v,
                    bottom=path[k - 1],
                    color=colour,
                    hatch="//" if p == "structure" else None,
                    edgecolor="white",
                )
                if np.isfinite(halves[k - 1]):
                    ax.errorbar(k, path[k], yerr=halves[k - 1], color="black", capsize=3, lw=0.8)
                ax.plot([k - 1.4, k + 0.4], [path[k - 1]] * 2, color="grey", lw=0.6, ls=":")
                ax.text(
                    k + 0.06,
                    max(path[k - 1], path[k]),
                    f"{v:+.2f}",
                    ha="left",
                    va="bottom",
                    fontsize=7,
                )
            last = len(steps) + 1
            ax.plot([last - 1.4, last + 0.4], [path[-1]] * 2, color="grey", lw=0.6, ls=":")
            ax.bar(last, end - base, bottom=base, color="#333333")
            ax.text(0, start, f"{start:.2f}", ha="center", va="bottom", fontsize=7)
            ax.text(last, end, f"{end:.2f}", ha="center", va="bottom", fontsize=7)
            ax.set_ylim(bottom, hi + pad)
            ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=8)
            if j == 0:
                ax.set_ylabel(f"{metric}{unit}", fontsize=8)
    fig.suptitle(
        f"From {start_label} to {end_label}: exact Shapley parts\n"
        "(common random numbers; whiskers: 95% interval over replicates)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
