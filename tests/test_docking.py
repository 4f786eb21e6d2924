"""Docking (Rand & Rust 2011): the model's word of mouth against closed forms.

1. Independent Cascade (Kempe, Kleinberg & Tardos 2003): with purchase certain, every buyer
   forwarding and a constant edge probability, a day's word of mouth from one seed is IC. Its
   exact reach distribution on small graphs is computed by enumerating live-arc graphs; on a
   larger generated graph it is compared with a plain reference IC on the same graph.
2. Bass (1969): with a well-mixed population, certain purchase, homogeneous need (innovation)
   and every adopter recommending daily (imitation), the share of adopters follows
   F(t) = (1 - exp(-(p+q)t)) / (1 + (q/p) exp(-(p+q)t)).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from sim.experiments.verification import (
    HOUSE,
    bass_curve,
    exact_ic_distribution,
    hub_component,
    model_bass_adoption,
    model_ic_reach,
    model_ic_reach_on_graph,
    reference_ic_reach,
)
from sim.world.cascade import independent_cascade
from sim.world.graph import community_graph, from_edges

PATH3 = [(0, 1), (1, 2)]
STAR4 = [(0, 1), (0, 2), (0, 3), (0, 4)]
TRIANGLE = [(0, 1), (1, 2), (2, 0)]


def chi_square_pvalue(sizes: np.ndarray, expected: np.ndarray) -> float:
    """Goodness of fit of observed reach sizes (1..n) to a distribution; rare cells pooled."""
    n = len(expected)
    obs = np.bincount(sizes, minlength=n + 1)[1:]
    keep = expected * sizes.size >= 5
    exp = expected[keep] * sizes.size
    o = obs[keep]
    if (~keep).any():
        exp = np.r_[exp, expected[~keep].sum() * sizes.size]
        o = np.r_[o, obs[~keep].sum()]
    return float(stats.chisquare(o, exp * o.sum() / exp.sum()).pvalue)


def test_exact_enumeration_matches_hand_closed_forms():
    p = 0.3
    assert np.allclose(exact_ic_distribution(PATH3, 3, 0, p), [1 - p, p * (1 - p), p * p])
    star = exact_ic_distribution(STAR4, 5, 0, p)
    assert np.allclose(star, [math.comb(4, k) * p**k * (1 - p) ** (4 - k) for k in range(5)])
    tri = exact_ic_distribution(TRIANGLE, 3, 0, p)
    # Each other node: reached directly (p) or via the other ((1-p) p^2 given that one is).
    assert np.isclose((np.arange(1, 4) * tri).sum(), 1 + 2 * (p + (1 - p) * p * p))


@pytest.mark.parametrize(("edges", "n"), [(HOUSE, 5), (PATH3, 3), (STAR4, 5)])
def test_cascade_function_reach_distribution_is_ic(edges, n):
    copies, p = 20_000, 0.4
    e = np.array(edges)
    offset = (np.arange(copies) * n)[:, None]
    adj = from_edges((e[:, 0] + offset).ravel(), (e[:, 1] + offset).ravel(), n * copies)
    exposed = np.zeros(n * copies, dtype=bool)
    independent_cascade(
        adj, np.arange(copies) * n, p, np.random.default_rng(1), n * copies, exposed=exposed
    )
    sizes = np.bincount(np.flatnonzero(exposed) // n, minlength=copies)
    expected = exact_ic_distribution(edges, n, 0, p)
    assert chi_square_pvalue(sizes, expected) > 0.001
    mean_exact = (np.arange(1, n + 1) * expected).sum()
    assert abs(sizes.mean() - mean_exact) < 4 * sizes.std() / math.sqrt(copies)


def test_model_word_of_mouth_is_ic_on_small_graphs():
    """The model's own word-of-mouth step, seeded by one buyer per copy of the house graph."""
    sizes = model_ic_reach(HOUSE, 5, 0.4, copies=8_000)
    assert chi_square_pvalue(sizes, exact_ic_distribution(HOUSE, 5, 0, 0.4)) > 0.001


@pytest.mark.slow
def test_model_word_of_mouth_matches_reference_ic_on_a_generated_graph():
    """On the same clustered graph, the model's cascade and a plain IC reach alike."""
    adj = hub_component(community_graph(300, 6, 50, 0.2, 0.6, 0.3, np.random.default_rng(2))[0])
    p = 0.15
    model = model_ic_reach_on_graph(adj, p, runs=3000, seed=1)
    reference = reference_ic_reach(adj, p, runs=3000, seed=2)
    se = math.sqrt(model.var() / model.size + reference.var() / reference.size)
    assert abs(model.mean() - reference.mean()) < 4 * se
    assert stats.ks_2samp(model, reference).pvalue > 0.001


def test_well_mixed_adoption_follows_the_bass_curve():
    """Brief's annual Bass figures (p=0.03, q=0.38) on a time scale of 1/26 year per tick.

    The model is discrete in time; on this scale the discrete recursion differs from the closed
    form by at most 0.0043; one run of 20,000 consumers strays up to ~0.02 from it (early
    randomness shifts the whole S), so the test averages four replicates: tolerance 0.015.
    """
    n, scale, years = 20_000, 26, 12
    p, q = 0.03 / scale, 0.38 / scale
    days = years * scale
    adopted = model_bass_adoption(n, p, q, days, replicates=4)
    t = np.arange(1, days + 1)
    assert np.abs(adopted - bass_curve(t, p, q)).max() < 0.015
    # And not trivially: the curve is an S that crosses from below 10% to above 80%.
    assert adopted[scale] < 0.1 and adopted[-1] > 0.8


def test_ic_reach_on_a_star_matches_its_mean_and_variance():
    """A known closed form: from the hub of a k-star, reach - 1 ~ Binomial(k, p)."""
    k, p = 50, 0.2
    adj = from_edges(np.zeros(k, int), np.arange(1, k + 1), k + 1)
    rng = np.random.default_rng(5)
    sizes = np.array(
        [
            sum(g[0].size for g in independent_cascade(adj, np.array([0]), p, rng, k + 1))
            for _ in range(3000)
        ]
    )
    assert abs(sizes.mean() - k * p) < 4 * math.sqrt(k * p * (1 - p) / sizes.size)
    assert abs(sizes.var() / (k * p * (1 - p)) - 1) < 0.1


def test_empty_graph_cascade_reaches_no_one():
    adj = sp.csr_array((3, 3), dtype=np.int8)
    gens = independent_cascade(adj, np.array([0]), 1.0, np.random.default_rng(0), 3)
    assert sum(g[0].size for g in gens) == 0
