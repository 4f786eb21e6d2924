"""The browser view (analysis/viz.py, `fishschool viz`): its model, its components rendered
without a browser (solara.render), and the served page in headless Chromium."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import ipyvuetify as v
import ipywidgets
import numpy as np
import pytest
import solara
from mesa.visualization.solara_viz import _check_model_params
from mesa.visualization.utils import force_update

from analysis import viz
from sim.cli import main
from sim.experiments.scenario import load
from sim.world.model import CommerceModel

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
LEVER_LABELS = [v[2] for v in viz.LEVERS.values()]


# ----------------------------------------------------------------------------------------------
# The model behind the page
# ----------------------------------------------------------------------------------------------
def test_default_world_is_the_command_lines_hybrid_scaled_down():
    model = viz.VizModel()
    cli = load("hybrid", ["world.consumers=4000", "levers.owners.count=20"])
    expected = cli.replicate_params(replicates=1)[0]  # replicate 0 of `fishschool run`
    assert model.params == expected
    reference = CommerceModel(expected)
    for _ in range(5):
        model.step()
        reference.step()
    assert model.timeseries().equals(reference.timeseries())


def test_levers_become_parameter_overrides_and_the_last_day_stops_play():
    model = viz.VizModel(
        owners_channel=False,
        streamer_channel=True,
        conventional_channel=False,
        owners=7,
        products_per_session=30,
        selection_strictness=0.5,
        hype=2.0,
        after_sales=60.0,
        consumers=2000,
        sets=("world.days=3",),
    )
    p = model.params
    assert (p.channels.owners, p.channels.streamer, p.channels.conventional) == (False, True, False)
    assert (p.world.consumers, p.owners.count, p.world.days) == (2000, 7, 3)
    assert p.streamer.products_per_session == 30 and p.hype.live == 2.0
    assert p.platform.selection_strictness == 0.5 and p.after_sales.platform_capacity == 60.0
    for _ in range(3):
        assert model.running
        model.step()
    assert not model.running


def test_controls_fit_mesa_and_start_at_the_scenarios_values():
    controls = viz.model_params("streamer", 3000, ())
    model = viz.VizModel(scenario_name="streamer", consumers=3000)
    _check_model_params(model, controls)  # every control is a keyword of VizModel
    for key, control in controls.items():
        if isinstance(control, dict):
            assert control["value"] == viz.lever_value(model.params, key)
            if control["type"] != "Checkbox":
                assert control["min"] <= control["value"] <= control["max"]
    assert controls["owners_channel"]["value"] is False  # the streamer scenario has no owners


def test_sample_is_cached_and_layout_is_in_the_unit_square():
    model = viz.VizModel(consumers=3000)
    s = viz.graph_view_sample(model, 300)
    assert s.nodes.size == 300 and np.unique(s.nodes).size == 300
    assert np.isin(model.owners.node[:3], s.nodes).all()
    assert np.abs(s.xy).max() <= 1.0 + 1e-9 and s.segments.shape[1:] == (2, 2)
    more_owners = viz.VizModel(consumers=3000, owners=model.params.owners.count + 10)
    assert viz.graph_view_sample(more_owners, 300) is s  # same world, same drawing


def test_a_step_and_its_redraw_take_well_under_a_second():
    model = viz.VizModel()
    graph, charts = viz.GraphPainter(model), viz.ChartsPainter(model)
    graph.png(), charts.png()
    step, redraw = [], []
    for _ in range(10):
        t0 = time.perf_counter()
        model.step()
        t1 = time.perf_counter()
        graph.png(), charts.png()
        step.append(t1 - t0)
        redraw.append(time.perf_counter() - t1)
    print(f"step {1000 * np.median(step):.1f} ms, redraw {1000 * np.median(redraw):.0f} ms")
    assert np.median(step) < 0.1
    assert np.median(step) + np.median(redraw) < 0.5


# ----------------------------------------------------------------------------------------------
# Components without a browser
# ----------------------------------------------------------------------------------------------
def _world(rc) -> str:
    """The text of the line describing the model's world and levers."""
    return rc.find(solara.widgets.HTML).widget.unsafe_innerHTML


def _image(rc, cls: str) -> bytes:
    found = [w for w in rc.find(ipywidgets.Image).widgets if cls in w._dom_classes]
    assert len(found) == 1
    return bytes(found[0].value)


def test_graph_and_charts_render_and_change_after_a_step():
    model = viz.VizModel(consumers=2500)
    box, rc = solara.render(
        solara.Column(children=[viz.GraphView(model), viz.ChannelCharts(model)]),
        handle_error=False,
    )
    before = {c: _image(rc, c) for c in ("fishschool-graph", "fishschool-charts")}
    assert all(b.startswith(b"\x89PNG") for b in before.values())
    assert "2,500 consumers" in _world(rc)
    for _ in range(2):
        model.step()
    force_update()
    after = {c: _image(rc, c) for c in before}
    assert all(after[c] != before[c] for c in before)


def test_figures_show_states_owners_and_streamer():
    model = viz.VizModel(consumers=2500)
    for _ in range(5):
        model.step()
    fig = viz.graph_figure(model)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert [label.rsplit(" ", 1)[0] for label in labels[:6]] == list(viz.CONSUMER_STATES)
    assert "the streamer" in labels and "owner (white: quit)" in labels
    charts = viz.charts_figure(model)
    titles = [ax.get_title() for ax in charts.axes]
    assert [t.split(" ")[0] for t in titles] == ["Reach", "Conversion", "Return", "Trust:"]
    lines = charts.axes[0].get_lines()
    assert [line.get_label() for line in lines] == ["owners", "streamer", "conventional", "all"]
    assert all(len(line.get_xdata()) == 5 for line in lines)


def test_page_controls_step_and_reset_without_a_browser():
    page = viz.make_page(None, 2500, ())
    box, rc = solara.render(solara.AppLayout(children=[page()]), handle_error=False)
    assert {"Reset", "▶", "Step"} <= {b.children[0] for b in rc.find(v.Btn).widgets}
    sliders = {w.label for w in rc.find(v.Slider).widgets}
    boxes = {w.label for w in rc.find(v.Checkbox).widgets}
    assert set(LEVER_LABELS) <= sliders | boxes

    def shows(text: str) -> bool:
        return len(rc.find(v.Html, children=[text]).widgets) == 1

    assert shows("Time: 0.0")
    charts = _image(rc, "fishschool-charts")
    for _ in range(3):
        rc.find(v.Btn, children=["Step"]).widget.click()
    assert shows("Time: 3.0")
    assert _image(rc, "fishschool-charts") != charts

    rc.find(v.Checkbox, label="Streamer sells (whale)").widget.v_model = False
    rc.find(v.Btn, children=["Reset"]).widget.click()
    assert shows("Time: 0.0")
    assert "channels owners, conventional;" in _world(rc)


# ----------------------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "nosuch: no such scenario file or shipped scenario"),
        (["--consumers", "1"], "--consumers 1 is outside the allowed range"),
        (["--set", "levers.hype.live=99"], "hype.live = 99"),
    ],
)
def test_viz_rejects_bad_input_before_starting_a_server(capsys, args, message):
    assert main(["viz", "--no-open", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------
# End to end: `fishschool viz` served, opened in headless Chromium
# ----------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """`fishschool viz` on a free port; stopped (with its server) whatever happens."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sim.cli", "viz", "--port", str(port), "--no-open"],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so the server goes with it
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"fishschool viz exited with {proc.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no page at {url} after 60 s:\n{log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()  # fishschool viz forwards it to the server
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _day(page) -> float:
    text = page.get_by_text(re.compile(r"^Time: ")).inner_text()
    return float(text.split(":")[1])


@pytest.mark.slow
def test_page_in_headless_chromium(served, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    screenshot_to = os.environ.get("FISHSCHOOL_SCREENSHOT")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 960})
            page.set_default_timeout(30_000)
            page.goto(served)
            step = page.get_by_role("button", name="Step")
            step.wait_for()
            for name in ("Reset", "Step"):
                expect(page.get_by_role("button", name=name)).to_be_visible()
            for label in LEVER_LABELS:
                expect(page.get_by_text(label, exact=True)).to_be_visible()
            graph, charts = (
                page.locator("img.fishschool-graph"),
                page.locator("img.fishschool-charts"),
            )
            for img in (graph, charts):
                expect(img).to_be_visible()
                assert img.evaluate("e => e.complete && e.naturalWidth") > 300
            expect(page.get_by_text("Time: 0.0")).to_be_visible()
            before = charts.screenshot(), graph.screenshot()

            latency = []
            for i in range(1, 4):
                t0 = time.perf_counter()
                step.click()
                page.get_by_text(f"Time: {i}.0").wait_for()
                latency.append(time.perf_counter() - t0)
            print(f"click to redrawn page: {', '.join(f'{x:.2f}' for x in latency)} s")
            page.wait_for_timeout(300)
            after = charts.screenshot(), graph.screenshot()
            assert after[0] != before[0], "the charts did not change after three steps"
            assert after[1] != before[1], "the graph did not change after three steps"

            # Play runs on its own until paused.
            page.get_by_role("button", name="▶").click()
            target = 30 if screenshot_to else 6
            deadline = time.monotonic() + 40
            while _day(page) < target and time.monotonic() < deadline:
                page.wait_for_timeout(200)
            page.get_by_role("button", name="❚❚").click()
            assert _day(page) >= target
            expect(step).to_be_enabled()
            page.wait_for_timeout(500)
            page.screenshot(path=tmp_path / "viz.png")
            if screenshot_to:
                path = ROOT / "docs/figures/viz.png" if screenshot_to == "1" else screenshot_to
                page.screenshot(path=path)

            # A control takes effect on Reset: the streamer switched off.
            page.get_by_text("Streamer sells (whale)", exact=True).click()
            page.get_by_role("button", name="Reset").click()
            expect(page.get_by_text("Time: 0.0")).to_be_visible()
            expect(page.locator(".fishschool-world")).to_contain_text(
                "channels owners, conventional;"
            )
        finally:
            browser.close()
    assert (tmp_path / "viz.png").stat().st_size > 10_000
