"""Watching a run in a browser: a Mesa SolaraViz page over :class:`~sim.world.model.CommerceModel`.

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
>>> model.params.world.owners, model.params.hype.live, model.n
(5, 1.5, 2000)
"""

from __future__ import annotations

import html
import io
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
import PIL.Image
import solara
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from analysis.plots import CHANNEL_COLOURS, STATE_COLOURS, GraphSample, graph_sample
from sim.world.channels import ALL, CHANNELS
from sim.world.model import CONSUMER_STATES, CommerceModel
from sim.world.params import Params

ENV_SCENARIO = "FISHSCHOOL_VIZ_SCENARIO"  # a scenario file or shipped name
ENV_CONSUMERS = "FISHSCHOOL_VIZ_CONSUMERS"  # consumers in the view's world
ENV_SET = "FISHSCHOOL_VIZ_SET"  # JSON list of --set overrides: ["levers.owners.commission=0.2"]
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
    "hype": ("hype.live", "SliderFloat", "Streamer hype", (0.0, 3.0, 0.1)),
    "after_sales": (
        "after_sales.platform_capacity",
        "SliderFloat",
        "Platform after-sales desk (problems a day per 100k consumers)",
        (0.0, 200.0, 5.0),
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
    consumers, owners scaled in proportion. Errors are :class:`~sim.world.params.ParameterError`."""
    from sim.experiments.scenario import load

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
        self.scenario_name = scenario_label(scenario_name)

    def step(self) -> None:
        super().step()
        self.running = self.steps < self.params.world.days


def scenario_label(scenario: str | None) -> str:
    """A scenario's short name: a shipped name as is, a file by its stem."""
    return Path(scenario).stem if scenario else DEFAULT_SCENARIO


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
_SAMPLES: dict[tuple, GraphSample] = {}


def graph_view_sample(model: CommerceModel, size: int = SAMPLE_SIZE, seed: int = 0) -> GraphSample:
    """:func:`analysis.plots.graph_sample`, cached: owners are a prefix of one permutation of
    the consumers, so the first three, and the sample, do not change with the number of
    owners, and the layout is computed once per world."""
    start = model.owners.node[:3] if model.owners.m else np.arange(min(3, model.n))
    p = model.params
    key = (p.seed, p.world.consumers, p.graph, tuple(int(s) for s in start), size, seed)
    if key not in _SAMPLES:
        if len(_SAMPLES) >= 16:
            _SAMPLES.pop(next(iter(_SAMPLES)))
        _SAMPLES[key] = graph_sample(model, size, seed)
    return _SAMPLES[key]


# ----------------------------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------------------------
class _Painter:
    """A figure built once for a model and updated in place before each drawing. The artists
    that change every step (``animated``) are drawn over a cached background (blitting), which
    is redrawn only when :meth:`background_key` changes: a step costs tens of milliseconds."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fig = Figure(figsize=(6.4, 6.2), dpi=80)
        self.canvas = FigureCanvasAgg(self.fig)
        self.animated: list = []
        self._background = None
        self._background_key = None

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


class GraphPainter(_Painter):
    """The sample coloured by state (:data:`~sim.world.model.CONSUMER_STATES`); owners are squares
    (white once they quit), the streamer a star linked to her followers in the sample, who are
    ringed in her colour. Legend shares are of all consumers."""

    def __init__(self, model: CommerceModel, size: int = SAMPLE_SIZE) -> None:
        super().__init__()
        self.model = model
        self.sample = s = graph_view_sample(model, size)
        ax = self.ax = self.fig.add_axes((0.0, 0.2, 1.0, 0.74))
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
        owner_node = model.owners.node if self.has_owners else np.zeros(0, dtype=np.int64)
        self.owner_at = np.isin(s.nodes, owner_node)
        order = np.argsort(owner_node)
        self.owner_index = order[np.searchsorted(owner_node[order], s.nodes[self.owner_at])]
        plain = ~self.owner_at
        self.dots = ax.scatter(*s.xy[plain].T, s=16, linewidths=0.7, zorder=2)
        self.squares = ax.scatter(
            *s.xy[self.owner_at].T, s=110, marker="s", edgecolors="black", zorder=3
        )
        if self.has_owners:
            owner = _marker("s", CHANNEL_COLOURS["owners"], "owner (white: quit)", 9, "black")
            handles.append(owner)
        self.legend = self.fig.legend(
            handles=handles, loc="lower center", ncols=3, frameon=False, fontsize=8
        )
        self.title = ax.set_title("", fontsize=10)
        self.animated = [self.links, self.dots, self.squares, self.legend, self.title]
        if self.has_streamer:
            self.animated.append(self.star_marker)

    def update(self) -> None:
        m, s = self.model, self.sample
        state = m.consumer_states()
        share = np.bincount(state, minlength=len(CONSUMER_STATES)) / m.n
        for text, name, x in zip(self.legend.get_texts(), CONSUMER_STATES, share, strict=False):
            text.set_text(f"{name} {x:.0%}")
        follows = m.consumers.follows[s.nodes]
        plain = ~self.owner_at
        self.dots.set_facecolors(np.asarray(STATE_COLOURS)[state[s.nodes[plain]]])
        ring = np.where(follows[plain], CHANNEL_COLOURS["streamer"], "none")
        self.dots.set_edgecolors(ring.tolist())
        active = m.owners.active[self.owner_index]
        self.squares.set_facecolors(np.where(active, CHANNEL_COLOURS["owners"], "white").tolist())
        if self.has_streamer:
            ends = s.xy[follows]
            self.links.set_segments(np.stack([np.broadcast_to(self.star, ends.shape), ends], 1))
            removed = not m.streamer.active
            colour = "#999999" if removed else CHANNEL_COLOURS["streamer"]
            self.star_marker.set_facecolor(colour)
            i = len(CONSUMER_STATES)
            self.legend.legend_handles[i].set_markerfacecolor(colour)
            self.legend.get_texts()[i].set_text(
                "the streamer (removed)" if removed else "the streamer"
            )
        around = f" around {int(self.owner_at.sum())} owners" if self.has_owners else ""
        self.title.set_text(f"Day {m.steps}: {s.nodes.size} of {m.n:,} consumers{around}")


def graph_figure(model: CommerceModel, size: int = SAMPLE_SIZE) -> Figure:
    """The graph view of :class:`GraphPainter` as a one-off figure."""
    return GraphPainter(model, size).figure()


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


class ChartsPainter(_Painter):
    """Four panels over days: reach, conversion, return rate and trust, one line a channel
    switched on, plus all channels together (for trust: trust in friends)."""

    def __init__(self, model: CommerceModel) -> None:
        super().__init__()
        self.model = model
        days = model.params.world.days
        axes = self.fig.subplots(2, 2, sharex=True)
        self.fig.subplots_adjust(
            left=0.1, right=0.98, top=0.88, bottom=0.14, wspace=0.28, hspace=0.3
        )
        on = [c for c in CHANNELS if getattr(model.params.channels, c)]
        self.lines: dict[tuple[str, str], Line2D] = {}
        for ax, (metric, title) in zip(axes.flat, CHART_PANELS, strict=True):
            for ch in [*on, ALL]:
                (self.lines[metric, ch],) = ax.plot(
                    [], [], color=CHANNEL_COLOURS[ch], lw=1.6, label=ch
                )
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
            ax.set_xlim(0, days)
            ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.set_ylim(0, 1)
            if metric != "trust":
                ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        for ax in axes[1]:
            ax.set_xlabel("day", fontsize=8)
        self.axes = axes
        self.hint = axes[0, 0].text(
            0.5, 0.5, "press Step or Play", transform=axes[0, 0].transAxes, ha="center"
        )
        self.fig.legend(
            *axes[0, 0].get_legend_handles_labels(), loc="lower center", ncols=4, frameon=False
        )
        self.title = self.fig.suptitle("", fontsize=11)
        self.animated = [*self.lines.values(), self.hint, self.title]

    def background_key(self):
        return tuple(ax.get_ylim() for ax in self.axes.flat)

    def update(self) -> None:
        m = self.model
        series = channel_series(m)
        for (metric, ch), line in self.lines.items():
            line.set_data(series[ch]["day"], series[ch][metric])
        for ax, (metric, _) in zip(self.axes.flat, CHART_PANELS, strict=True):
            if metric in ("conversion", "return_rate"):
                values = [series[ch][metric] for ch in series]
                top = max((np.nanmax(v) for v in values if np.isfinite(v).any()), default=0)
                ax.set_ylim(0, _nice_top(top))
        self.hint.set_visible(m.steps == 0)
        self.title.set_text(f"Channels, day {m.steps} of {m.params.world.days}")


def _nice_top(value: float) -> float:
    """An upper axis limit above ``value`` that changes rarely as the value moves.

    >>> _nice_top(0.0), _nice_top(0.012), _nice_top(0.37)
    (0.01, 0.015, 0.4)
    """
    if not value > 0:
        return 0.01
    scale = 10 ** np.floor(np.log10(value))
    for k in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0):
        if value * 1.05 <= k * scale:
            return float(round(k * scale, 12))
    return float(10 * scale)


def charts_figure(model: CommerceModel) -> Figure:
    """The charts of :class:`ChartsPainter` as a one-off figure."""
    return ChartsPainter(model).figure()


# ----------------------------------------------------------------------------------------------
# Solara components and the page
# ----------------------------------------------------------------------------------------------
def world_summary(model: CommerceModel) -> str:
    """One line of HTML: the world and the levers this model was built with."""
    p = model.params
    on = [c for c in CHANNELS if getattr(p.channels, c)]
    name = html.escape(getattr(model, "scenario_name", "model"))
    return (
        f"<b>{name}</b>: {model.n:,} consumers, {p.world.owners:,} owners; "
        f"channels {', '.join(on) or 'none'}; {p.streamer.products_per_session} products a "
        f"session, streamer hype {p.hype.live:.1f}; selection strictness "
        f"{p.platform.selection_strictness:.2f}, after-sales desk "
        f"{p.after_sales.platform_capacity:.0f} a day per 100k. "
        "<i>Controls apply on Reset.</i>"
    )


@solara.component
def GraphView(model: CommerceModel):
    """The world's levers and the social graph sample, redrawn after every step."""
    update_counter.get()
    painter = solara.use_memo(
        lambda: GraphPainter(model) if model.graph is not None else None, [model]
    )
    with solara.Column(gap="0px") as main:
        solara.HTML(
            tag="div",
            unsafe_innerHTML=world_summary(model),
            classes=["fishschool-world"],
            style="font-size: 13px; padding: 4px 8px",
        )
        if painter is None:
            solara.Info("A well-mixed world (graph.kind) has no social graph to draw.")
        else:
            solara.Image(painter.png(), classes=["fishschool-graph"])
    return main


@solara.component
def ChannelCharts(model: CommerceModel):
    """Reach, conversion, return rate and trust per channel, redrawn after every step."""
    update_counter.get()
    painter = solara.use_memo(lambda: ChartsPainter(model), [model])
    return solara.Image(painter.png(), classes=["fishschool-charts"])


def make_page(
    scenario: str | None = None, consumers: int | None = VIEW_CONSUMERS, sets: tuple = ()
):
    """The page for a scenario (a Solara component). Each browser session gets its own model;
    the scenario is validated now, so a mistake surfaces before a server starts."""
    sets = tuple(sets)
    controls = model_params(scenario, consumers, sets)
    initial = {k: (v["value"] if isinstance(v, dict) else v) for k, v in controls.items()}
    title = f"fishschool: {scenario_label(scenario)}"

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
