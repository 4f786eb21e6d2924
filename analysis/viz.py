"""Watching a run in a browser: a Mesa SolaraViz page over :class:`~sim.model.CommerceModel`.

``fishschool viz [SCENARIO]`` serves this page (``solara run analysis.viz``); the scenario and
the view size reach the server through environment variables (:data:`ENV_SCENARIO`,
:data:`ENV_CONSUMERS`, :data:`ENV_SET`). The page has controls for the main levers, Step / Play /
Reset, a drawing of a sample of the social graph coloured by consumer state, and live charts of
reach, conversion, return rate and trust per channel.

The world is a scenario shrunk to :data:`VIEW_CONSUMERS` consumers (owners scaled with it), run
as replicate 0 of the command line (same seed derivation), so a day takes a few milliseconds.
The model code does not know about this module: :class:`VizModel` only turns the controls into
parameter overrides.

>>> model = VizModel(owners=5, hype=1.5, consumers=2000)
>>> model.params.world.owners, model.params.streamer.hype, model.n
(5, 1.5, 2000)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import solara
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from analysis.plots import CHANNEL_COLOURS, STATE_COLOURS
from sim.channels import ALL, CHANNELS
from sim.model import CONSUMER_STATES, CommerceModel
from sim.params import Params

ENV_SCENARIO = "FISHSCHOOL_VIZ_SCENARIO"  # a scenario file or shipped name
ENV_CONSUMERS = "FISHSCHOOL_VIZ_CONSUMERS"  # consumers in the view's world
ENV_SET = "FISHSCHOOL_VIZ_SET"  # a JSON list of --set overrides, e.g. ["levers.owners.hype=0.5"]
DEFAULT_SCENARIO = "hybrid"
VIEW_CONSUMERS = 4000
SAMPLE_SIZE = 600  # consumers drawn in the graph view

# The levers on the page: keyword of VizModel -> (dotted parameter, control type, label, range).
LEVERS: dict[str, tuple[str, str, str, tuple | None]] = {
    "owners_channel": ("channels.owners", "Checkbox", "Owners sell (fish school)", None),
    "streamer_channel": ("channels.streamer", "Checkbox", "Streamer sells (whale)", None),
    "conventional_channel": ("channels.conventional", "Checkbox", "Search and ads sell", None),
    "owners": ("world.owners", "SliderInt", "Owners", None),  # range from the world size
    "products_per_session": (
        "streamer.products_per_session",
        "SliderInt",
        "Products per streamer session",
        (5, 300, 5),
    ),
    "selection_strictness": (
        "platform.selection_strictness",
        "SliderFloat",
        "Platform selection strictness",
        (0.0, 0.95, 0.05),
    ),
    "hype": ("streamer.hype", "SliderFloat", "Streamer hype", (0.0, 3.0, 0.1)),
    "after_sales": (
        "platform.after_sales",
        "SliderFloat",
        "Platform after-sales",
        (0.0, 1.0, 0.05),
    ),
}


# ----------------------------------------------------------------------------------------------
# The model behind the page
# ----------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def base_params(
    scenario: str | None = None, consumers: int | None = VIEW_CONSUMERS, sets: tuple = ()
) -> Params:
    """The scenario's parameters (replicate 0 of the command line) shrunk to ``consumers``
    consumers, owners scaled in proportion. Errors are :class:`~sim.params.ParameterError`."""
    from sim.scenario import load

    sc = load(scenario or DEFAULT_SCENARIO, sets)
    p = sc.replicate_params(replicates=1)[0]
    if consumers is None or consumers >= p.world.consumers:
        return p
    owners = p.world.owners
    scaled = max(1, round(owners * consumers / p.world.consumers)) if owners else 0
    return p.with_overrides({"world.consumers": consumers, "world.owners": scaled})


class VizModel(CommerceModel):
    """:class:`CommerceModel` with the page's levers as keyword arguments (``None`` keeps the
    scenario's value), stopping at the scenario's horizon."""

    def __init__(
        self,
        owners_channel: bool | None = None,
        streamer_channel: bool | None = None,
        conventional_channel: bool | None = None,
        owners: int | None = None,
        products_per_session: int | None = None,
        selection_strictness: float | None = None,
        hype: float | None = None,
        after_sales: float | None = None,
        scenario_name: str | None = None,
        consumers: int | None = VIEW_CONSUMERS,
        sets: tuple = (),
    ) -> None:
        given = {
            "owners_channel": owners_channel,
            "streamer_channel": streamer_channel,
            "conventional_channel": conventional_channel,
            "owners": owners,
            "products_per_session": products_per_session,
            "selection_strictness": selection_strictness,
            "hype": hype,
            "after_sales": after_sales,
        }
        overrides = {LEVERS[k][0]: v for k, v in given.items() if v is not None}
        params = base_params(scenario_name, consumers, tuple(sets)).with_overrides(overrides)
        super().__init__(params)
        self.scenario_name = scenario_name or DEFAULT_SCENARIO

    def step(self) -> None:
        super().step()
        self.running = self.steps < self.params.world.days


def lever_value(params: Params, key: str):
    section, name = LEVERS[key][0].split(".")
    return getattr(getattr(params, section), name)


def model_params(scenario: str | None, consumers: int | None, sets: tuple) -> dict:
    """SolaraViz controls for the levers, starting at the scenario's values, plus the fixed
    arguments that rebuild the same world on Reset."""
    p = base_params(scenario, consumers, sets)
    controls: dict = {}
    for key, (_, kind, label, bounds) in LEVERS.items():
        value = lever_value(p, key)
        control = {"type": kind, "value": value, "label": label}
        if key == "owners":
            bounds = (0, max(4 * value, 50, value), 1)
        if bounds is not None:
            control.update(min=bounds[0], max=bounds[1], step=bounds[2])
        controls[key] = control
    controls.update(scenario_name=scenario, consumers=consumers, sets=tuple(sets))
    return controls


# ----------------------------------------------------------------------------------------------
# The graph sample: chosen and laid out once per world, then coloured every step
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GraphSample:
    nodes: np.ndarray  # consumer ids
    xy: np.ndarray  # positions, (n, 2)
    segments: np.ndarray  # friendship edges inside the sample, (edges, 2, 2)


_SAMPLES: dict[tuple, GraphSample] = {}


def graph_view_sample(model: CommerceModel, size: int = SAMPLE_SIZE, seed: int = 0) -> GraphSample:
    """A connected sample of ``size`` consumers grown breadth first from the first three owners
    (as :func:`analysis.plots.graph_sample`), with a spring layout. Owners are drawn in a fixed
    order, so the sample depends on the world, not on the number of owners; it is cached."""
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
        if len(_SAMPLES) >= 16:
            _SAMPLES.pop(next(iter(_SAMPLES)))
        _SAMPLES[key] = GraphSample(nodes, xy, xy[edges])
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


def spring_layout(n: int, edges: np.ndarray, seed: int = 0, iterations: int = 60) -> np.ndarray:
    """Fruchterman-Reingold positions in [-1, 1]^2 (dense numpy, as networkx's small-graph
    path; about a second for a thousand nodes).

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
        disp = np.einsum("ijk,ij->ik", delta, force)
        length = np.maximum(np.sqrt((disp**2).sum(axis=-1)), 0.01)
        pos += disp * (t / length)[:, None]
        t -= 0.1 / (iterations + 1)
    pos -= pos.mean(axis=0)
    scale = np.abs(pos).max()
    return (pos / scale if scale > 0 else pos).astype(np.float64)


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
def graph_figure(model: CommerceModel, size: int = SAMPLE_SIZE) -> Figure:
    """The sample coloured by state (:data:`~sim.model.CONSUMER_STATES`); owners are squares,
    the streamer a star linked to her followers in the sample (ringed in her colour). Legend
    shares are of all consumers."""
    s = graph_view_sample(model, size)
    state = model.consumer_states()
    share = np.bincount(state, minlength=len(CONSUMER_STATES)) / model.n
    here = state[s.nodes]
    follows = model.consumers.follows[s.nodes]
    colours = np.asarray(STATE_COLOURS)[here]
    streamer_colour = CHANNEL_COLOURS["streamer"]

    fig = Figure(figsize=(6.4, 6.2), dpi=80)
    ax = fig.add_axes((0.0, 0.2, 1.0, 0.74))
    ax.add_collection(LineCollection(s.segments, colors="#c8c8c8", linewidths=0.35, zorder=1))
    handles = []
    if model.params.channels.streamer:
        star = np.array([1.22, 0.0])
        if follows.any():
            links = np.stack([np.broadcast_to(star, (int(follows.sum()), 2)), s.xy[follows]], 1)
            ax.add_collection(
                LineCollection(links, colors=streamer_colour, linewidths=0.2, alpha=0.35, zorder=0)
            )
        active = model.streamer.active
        ax.scatter(
            *star,
            marker="*",
            s=520,
            color=streamer_colour if active else "#999999",
            edgecolor="black",
            zorder=4,
        )
        label = "the streamer" if active else "the streamer (removed)"
        handles.append(_marker("*", streamer_colour if active else "#999999", label, 13))
        handles.append(_marker("o", "white", "follower (ring)", 7, edge=streamer_colour))
    owner_at = np.isin(s.nodes, model.owners.node)
    plain = ~owner_at
    ax.scatter(
        *s.xy[plain].T,
        s=16,
        c=colours[plain],
        edgecolors=np.where(follows[plain], streamer_colour, "none").tolist(),
        linewidths=0.7,
        zorder=2,
    )
    if owner_at.any():
        order = np.argsort(model.owners.node)
        which = order[np.searchsorted(model.owners.node[order], s.nodes[owner_at])]
        active = model.owners.active[which]
        ax.scatter(
            *s.xy[owner_at].T,
            s=110,
            marker="s",
            c=np.where(active, CHANNEL_COLOURS["owners"], "white").tolist(),
            edgecolors="black",
            zorder=3,
        )
    handles.append(_marker("s", CHANNEL_COLOURS["owners"], "owner (white: quit)", 9, "black"))
    handles[:0] = [
        _marker("o", STATE_COLOURS[i], f"{name} {share[i]:.0%}", 7)
        for i, name in enumerate(CONSUMER_STATES)
    ]
    ax.set_xlim(-1.08, 1.32)
    ax.set_ylim(-1.08, 1.08)
    ax.set_axis_off()
    ax.set_title(
        f"Day {model.steps}: {s.nodes.size} of {model.n:,} consumers around "
        f"{int(owner_at.sum())} owners",
        fontsize=10,
    )
    fig.legend(handles=handles, loc="lower center", ncols=3, frameon=False, fontsize=8)
    return fig


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


def channel_series(model: CommerceModel) -> dict[str, dict[str, np.ndarray]]:
    """Per channel switched on (and ``all``), day by day: reach share, conversion (orders /
    exposures) and return rate (returns / delivered orders) to date, and trust."""
    ts = model.timeseries()
    on = [c for c in CHANNELS if getattr(model.params.channels, c)]
    out: dict[str, dict[str, np.ndarray]] = {}
    for ch in [*on, ALL]:
        part = ts[ts["channel"] == ch]
        cum = part[["orders", "exposures", "returns", "delivered"]].cumsum().to_numpy(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[ch] = {
                "day": part["day"].to_numpy() + 1,
                "reach_share": part["reach"].to_numpy(float) / model.n,
                "conversion": np.where(cum[:, 1] > 0, cum[:, 0] / cum[:, 1], np.nan),
                "return_rate": np.where(cum[:, 3] > 0, cum[:, 2] / cum[:, 3], np.nan),
                "trust": part["trust"].to_numpy(float),
            }
    return out


CHART_PANELS = (
    ("reach_share", "Reach (share of consumers)"),
    ("conversion", "Conversion to date (orders / exposures)"),
    ("return_rate", "Return rate to date (returns / delivered)"),
    ("trust", "Trust: members in owner, followers in\nstreamer, all in search; all: in friends"),
)


def _percent(value: float, _pos) -> str:
    return f"{value:.0%}" if value == 0 or abs(value) >= 0.1 else f"{value:.1%}"


def charts_figure(model: CommerceModel) -> Figure:
    """Four panels over days: reach, conversion, return rate and trust, one line a channel."""
    series = channel_series(model)
    fig = Figure(figsize=(6.4, 6.2), dpi=80)
    axes = fig.subplots(2, 2, sharex=True)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.88, bottom=0.14, wspace=0.28, hspace=0.3)
    for ax, (metric, title) in zip(axes.flat, CHART_PANELS, strict=True):
        for ch, s in series.items():
            ax.plot(s["day"], s[metric], color=CHANNEL_COLOURS[ch], lw=1.6, label=ch)
        ax.set_title(title, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, model.params.world.days)
        if metric == "trust":
            ax.set_ylim(0, 1)
        else:
            ax.set_ylim(bottom=0, top=None if model.steps else 1)
            ax.yaxis.set_major_formatter(_percent)
    for ax in axes[1]:
        ax.set_xlabel("day", fontsize=8)
    if model.steps == 0:
        axes[0, 0].text(0.5, 0.5, "press Step or Play", transform=axes[0, 0].transAxes, ha="center")
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncols=4, frameon=False)
    fig.suptitle(f"Channels, day {model.steps} of {model.params.world.days}", fontsize=11)
    return fig


# ----------------------------------------------------------------------------------------------
# Solara components and the page
# ----------------------------------------------------------------------------------------------
def world_summary(model: CommerceModel) -> str:
    """One line: the world and the levers this model was built with."""
    p = model.params
    on = [c for c in CHANNELS if getattr(p.channels, c)]
    return (
        f"**{getattr(model, 'scenario_name', 'model')}**: {model.n:,} consumers, "
        f"{p.world.owners:,} owners; channels {', '.join(on) or 'none'}; "
        f"{p.streamer.products_per_session} products a session, streamer hype "
        f"{p.streamer.hype:.1f}; selection strictness {p.platform.selection_strictness:.2f}, "
        f"after-sales {p.platform.after_sales:.2f}. *Controls apply on Reset.*"
    )


@solara.component
def GraphView(model: CommerceModel):
    """The world's levers and the social graph sample, redrawn after every step."""
    update_counter.get()
    with solara.Column(gap="0px") as main:
        solara.Markdown(world_summary(model), style={"font-size": "13px"})
        solara.FigureMatplotlib(graph_figure(model), format="png")
    return main


@solara.component
def ChannelCharts(model: CommerceModel):
    """Reach, conversion, return rate and trust per channel, redrawn after every step."""
    update_counter.get()
    return solara.FigureMatplotlib(charts_figure(model), format="png")


def make_page(
    scenario: str | None = None, consumers: int | None = VIEW_CONSUMERS, sets: tuple = ()
):
    """The page for a scenario (a Solara component). Each browser session gets its own model;
    the scenario is validated now, so a mistake surfaces before a server starts."""
    sets = tuple(sets)
    controls = model_params(scenario, consumers, sets)
    initial = {k: (v["value"] if isinstance(v, dict) else v) for k, v in controls.items()}
    title = f"fishschool: {scenario or DEFAULT_SCENARIO}"

    @solara.component
    def Page():
        model = solara.use_memo(lambda: VizModel(**initial), [])
        return SolaraViz(
            model,
            components=[(GraphView, 0), (ChannelCharts, 0)],
            model_params=controls,
            name=title,
            play_interval=150,
        )

    return Page


def options_from_env(environ=os.environ) -> dict:
    """``make_page`` arguments from the environment the command line sets."""
    consumers = environ.get(ENV_CONSUMERS)
    return {
        "scenario": environ.get(ENV_SCENARIO) or None,
        "consumers": int(consumers) if consumers else VIEW_CONSUMERS,
        "sets": tuple(json.loads(environ.get(ENV_SET) or "[]")),
    }


page = make_page(**options_from_env())
