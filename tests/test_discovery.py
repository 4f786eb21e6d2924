"""Scenario discovery (PRIM) finds a known box, reads wins the way each metric declares, and
`analyze` writes it for a real sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.discovery import describe, discover, find_box

RNG = np.random.default_rng(7)


def test_prim_recovers_a_known_box():
    """Cases of interest exactly where a > 0.6 and b < 0.3 (c irrelevant): the box restricts a
    and b only, to within 0.05 of the true limits, with high coverage and density."""
    x = pd.DataFrame({name: RNG.uniform(0, 1, 3000) for name in "abc"})
    y = ((x.a > 0.6) & (x.b < 0.3)).to_numpy()
    box = find_box(x, y, min_coverage=0.8)
    limits = box.restricted.set_index("parameter")
    assert set(limits.index) == {"a", "b"}
    assert limits.loc["a", "low"] == pytest.approx(0.6, abs=0.05)
    assert limits.loc["b", "high"] == pytest.approx(0.3, abs=0.05)
    assert box.coverage >= 0.8 and box.density >= 0.9


def test_prim_refuses_a_question_without_contrast():
    x = pd.DataFrame({"a": RNG.uniform(0, 1, 100)})
    with pytest.raises(ValueError, match="all one value"):
        find_box(x, np.ones(100, dtype=bool))


def _means(winner_where, metric: str, n: int = 1500) -> tuple[pd.DataFrame, dict]:
    """A sweep's point means with two uncertainties u and v; the streamer's metric is below
    the owners' exactly where ``winner_where(u, v)``."""
    u, v = RNG.uniform(0, 1, n), RNG.uniform(0, 1, n)
    below = winner_where(u, v)
    rows = []
    for i in range(n):
        owners = 0.10
        streamer = 0.05 if below[i] else 0.20
        for channel, value in (("owners", owners), ("streamer", streamer)):
            rows.append((i, channel, metric, u[i], v[i], value))
    means = pd.DataFrame(rows, columns=["point_id", "channel", "metric", "u", "v", "value"])
    manifest = {
        "factors": [
            {"name": "u", "kind": "uncertainty", "low": 0.0, "high": 1.0},
            {"name": "v", "kind": "uncertainty", "low": 0.0, "high": 1.0},
        ]
    }
    return means, manifest


def test_a_lower_return_rate_is_the_streamers_win():
    """return_rate: lower is better, so the streamer wins where her rate is below the owners'."""
    means, manifest = _means(lambda u, v: u > 0.5, "return_rate")
    d = discover(means, manifest, "return_rate")
    assert d.wins == int((means[means.channel == "streamer"].u > 0.5).sum())
    limits = d.box.restricted.set_index("parameter")
    assert list(limits.index) == ["u"] and limits.loc["u", "low"] == pytest.approx(0.5, abs=0.05)
    assert "`u` in [0.5" in describe(d)


def test_a_higher_conversion_is_the_streamers_win():
    """visit_conversion: higher is better, so the same table reads the other way round."""
    means, manifest = _means(lambda u, v: u > 0.5, "visit_conversion")
    d = discover(means, manifest, "visit_conversion")
    limits = d.box.restricted.set_index("parameter")
    assert limits.loc["u", "high"] == pytest.approx(0.5, abs=0.05)


def test_no_region_when_one_side_always_wins():
    means, manifest = _means(lambda u, v: np.zeros_like(u, dtype=bool), "return_rate")
    d = discover(means, manifest, "return_rate")
    assert d.box is None and d.wins == 0
    assert "no region to find" in describe(d)
