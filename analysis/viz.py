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
>>> model.params.owners.count, model.params.hype.live, model.n
(5, 1.5, 2000)
"""

from __future__ import annotations

import html
import json
import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import solara
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator, PercentFormatter
from mesa.visualization import SolaraViz
from mesa.visualization.utils import update_counter

from analysis.plots import (
    CHANNEL_COLOURS,
    GraphPainter,
    GraphSample,
    Painter,
    day_label,
    graph_sample,
    social_graph,
)
from sim.world.channels import ALL, CHANNELS
from sim.world.model import CONSUMER_STATES as CONSUMER_STATES  # the legend's states
from sim.world.model import CommerceModel
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
    "owners": ("owners.count", "SliderInt", "Owners", None),  # range from the world size
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
    owners = p.owners.count
    scaled = max(1, round(owners * consumers / p.world.consumers)) if owners else 0
    return p.with_overrides({"world.consumers": consumers, "owners.count": scaled})


class VizModel(CommerceModel):
    """:class:`CommerceModel` with the page's levers as keyword arguments (``None`` keeps the
    scenario's value), stopping at the scenario's last day."""

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
# Figures: the social graph is analysis.plots' (one sample, one painter, also the static figure)
# ----------------------------------------------------------------------------------------------
def graph_view_sample(model: CommerceModel, size: int = SAMPLE_SIZE, seed: int = 0) -> GraphSample:
    """The view's sample: :func:`analysis.plots.graph_sample` (cached per world) at the view's
    size."""
    return graph_sample(model, size, seed)


def graph_figure(model: CommerceModel, size: int = SAMPLE_SIZE) -> Figure:
    """The graph view as a one-off figure: :func:`analysis.plots.social_graph` at the view's
    size."""
    return social_graph(model, size)


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


class ChartsPainter(Painter):
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
        self.title.set_text(f"Channels, {day_label(m)} (days 0 to {m.params.world.days - 1})")


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
        f"<b>{name}</b>: {model.n:,} consumers, {p.owners.count:,} owners; "
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
        lambda: GraphPainter(model, SAMPLE_SIZE) if model.graph is not None else None, [model]
    )
    with solara.Column(gap="0px") as main:
        solara.HTML(
            tag="div",
            unsafe_innerHTML=world_summary(model),
            classes=["fishschool-world"],
            style="font-size: 13px; padding: 4px 8px",
        )
        if painter is None:
            solara.Info("A well-mixed world (graph.topology) has no social graph to draw.")
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


def serve(
    scenario: str | None,
    consumers: int,
    sets: list[str],
    host: str = "127.0.0.1",
    port: int = 8765,
    open_browser: bool = True,
) -> int:
    """Serve this page with Solara in a child process until it ends, Ctrl-C or SIGTERM; returns
    its exit status (0 when stopped by either signal). The page reads its world from the
    environment (:data:`ENV_SCENARIO`, :data:`ENV_CONSUMERS`, :data:`ENV_SET`)."""
    import signal
    import subprocess
    import sys

    env = {
        **os.environ,
        ENV_SCENARIO: scenario or "",
        ENV_CONSUMERS: str(consumers),
        ENV_SET: json.dumps(list(sets)),
    }
    env.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "False")  # no calls home
    # Served on 127.0.0.1 (not "localhost"), Solara warns on every page load that its cookie
    # falls back to samesite=lax, which is fine for a local page.
    quiet = "ignore:Cookies with samesite=none require https:UserWarning"
    env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), quiet]))
    command = [sys.executable, "-m", "solara", "run", "analysis.viz", "--production"]
    command += ["--no-check-version", "--host", host, "--port", str(port)]
    command += ["--open"] if open_browser else ["--no-open"]
    server = subprocess.Popen(command, env=env)
    previous = signal.signal(signal.SIGTERM, lambda *_: server.terminate())
    try:
        while True:
            try:
                code = server.wait()
                break
            except KeyboardInterrupt:
                continue  # the server had the same Ctrl-C and is shutting down
    finally:
        signal.signal(signal.SIGTERM, previous)
        if server.poll() is None:
            server.kill()
            server.wait()
    return 0 if code in (-signal.SIGINT, -signal.SIGTERM) else code
