"""The social graph has one sample and one painter: the static figure (analysis.plots.social_graph)
and the browser view's painter (GraphPainter, redrawn after every day) show the same consumers in
the same colours for the same state of the model, under the same day label."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.collections import PathCollection
from matplotlib.colors import to_rgba

from analysis import plots
from conftest import small
from sim.world.model import CONSUMER_STATES, CommerceModel

SIZE = 300


def _world(days: int = 0, **overrides) -> CommerceModel:
    model = CommerceModel(small(overrides))
    for _ in range(days):
        model.step()
    return model


def _drawn(ax) -> dict:
    """Each consumer drawn (by position) -> (marker, face colour, edge colour)."""
    out = {}
    for c in ax.collections:
        if not isinstance(c, PathCollection) or len(c.get_offsets()) < 1:
            continue
        faces, edges = c.get_facecolors(), c.get_edgecolors()
        marker = len(c.get_paths()[0].vertices)  # a circle and a square differ
        for i, xy in enumerate(np.asarray(c.get_offsets())):
            face = tuple(float(x) for x in faces[i % len(faces)])
            edge = tuple(float(x) for x in edges[i % len(edges)]) if len(edges) else None
            out[tuple(np.round(xy, 9))] = (marker, face, edge)
    return out


def _frame(painter: plots.GraphPainter) -> tuple[dict, str, list[str]]:
    painter.png()  # a frame as the browser view draws it (blitted)
    legend = [t.get_text() for t in painter.legend.get_texts()]
    return _drawn(painter.ax), painter.title.get_text(), legend


def _static(model: CommerceModel) -> tuple[dict, str, list[str]]:
    fig = plots.social_graph(model, SIZE)
    try:
        ax = fig.axes[0]
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        return _drawn(ax), ax.get_title(), legend
    finally:
        plt.close(fig)


def test_static_figure_and_first_frame_come_from_one_sample():
    model = _world(days=4)
    static, static_title, static_legend = _static(model)
    painter = plots.GraphPainter(model, SIZE)
    frame, frame_title, frame_legend = _frame(painter)

    sample = plots.graph_sample(model, SIZE)
    assert painter.sample is sample  # one sample, laid out once per world
    star = tuple(np.round(painter.star, 9))
    node_at = {tuple(np.round(xy, 9)): n for n, xy in zip(sample.nodes, sample.xy, strict=True)}
    assert set(static) - {star} == set(node_at) == set(frame) - {star}  # the same consumers
    assert static == frame  # in the same colours, markers and rings
    assert static_legend == frame_legend and static_title == frame_title

    # ... and the colours are the model's states (owners: squares in the owners' colour).
    state = model.consumer_states()
    owners = set(model.owners.node.tolist())
    for xy, node in node_at.items():
        if node in owners:
            assert frame[xy][1] in {to_rgba(plots.CHANNEL_COLOURS["owners"]), to_rgba("white")}
        else:
            assert frame[xy][1] == to_rgba(plots.STATE_COLOURS[state[node]])
    assert np.unique(state[sample.nodes]).size > 2  # a drawing with something to show


def test_a_painter_built_on_day_0_and_stepped_shows_what_the_static_figure_shows():
    """The browser view builds its painter once and redraws it; after any number of days its
    frame is the static figure of that day, owners who joined or quit since included."""
    model = _world(**{"owners.recruit_rate": 0.3, "owners.quit_rate": 0.05})
    painter = plots.GraphPainter(model, SIZE)
    first, _, _ = _frame(painter)
    assert first == _static(model)[0]
    for _ in range(12):
        model.step()
    frame, title, legend = _frame(painter)
    assert frame != first
    assert (frame, title, legend) == _static(model)
    at, index = painter.owners_in_sample()
    assert model.owners.joined_day[index].max() > 0, "no owner in the sample joined on the way"
    assert not model.owners.active[index].all(), "no owner in the sample quit on the way"


def test_both_say_the_same_true_day():
    """Days count from 0: after the first step the model has simulated day 0 (model.day), the
    last day in its tables; before it, none."""
    model = _world()
    assert plots.day_label(model) == "before day 0"
    assert _static(model)[1].endswith(", before day 0")
    painter = plots.GraphPainter(model, SIZE)
    assert _frame(painter)[1].endswith(", before day 0")
    for steps in (1, 2, 7):
        while model.steps < steps:
            model.step()
        last_day = int(model.timeseries()["day"].max())
        assert model.day == last_day == steps - 1
        label = f"after day {last_day}"
        assert plots.day_label(model) == label
        static_title, frame_title = _static(model)[1], _frame(painter)[1]
        assert static_title == frame_title
        assert static_title == f"{SIZE} of {model.n:,} consumers around " + (
            f"{painter.owners_in_sample()[0].sum()} owners, {label}"
        )


def test_a_well_mixed_world_has_no_graph_to_draw():
    model = CommerceModel(small({"graph.topology": "well_mixed"}))
    with pytest.raises(ValueError, match="no graph to draw"):
        plots.social_graph(model)


def test_the_browser_view_uses_the_same_sample_and_painter():
    viz = pytest.importorskip("analysis.viz")  # the [viz] extra
    model = viz.VizModel(consumers=2500)
    assert viz.GraphPainter is plots.GraphPainter
    assert viz.graph_view_sample(model) is plots.graph_sample(model, viz.SAMPLE_SIZE)
    for _ in range(3):
        model.step()
    figure = viz.graph_figure(model)
    try:
        assert figure.axes[0].get_title().endswith(f", after day {model.day}")
        assert [t.get_text().rsplit(" ", 1)[0] for t in figure.legends[0].get_texts()][:6] == list(
            CONSUMER_STATES
        )
    finally:
        plt.close(figure)
