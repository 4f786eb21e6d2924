"""Docking (Rand & Rust 2011): the model's word of mouth against closed forms.

1. Independent Cascade (Kempe, Kleinberg & Tardos 2003): with purchase certain, every buyer
   forwarding and a constant edge probability, a day's word of mouth from one seed is IC. Its
   exact reach distribution on small graphs is computed here by enumerating live-arc graphs.
2. Bass (1969): with a well-mixed population, certain purchase, homogeneous need (innovation)
   and every adopter recommending daily (imitation), the share of adopters follows
   F(t) = (1 - exp(-(p+q)t)) / (1 + (q/p) exp(-(p+q)t)).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
from scipy import stats

from sim.cascade import independent_cascade
from sim.channels import Channel, Source
from sim.graph import from_edges
from sim.model import CommerceModel, run
from sim.params import Params

# Small graphs: (name, edges, seed node).
HOUSE = [(0, 1), (1, 2), (2, 3), (3, 0), (2, 4), (3, 4)]  # a square with a roof
PATH3 = [(0, 1), (1, 2)]
STAR4 = [(0, 1), (0, 2), (0, 3), (0, 4)]
TRIANGLE = [(0, 1), (1, 2), (2, 0)]


def exact_ic_distribution(edges, n, seed, p) -> np.ndarray:
    """P(reach = k), k = 1..n, by enumerating every live/dead pattern of the 2|E| arcs."""
    arcs = [(u, v) for u, v in edges] + [(v, u) for u, v in edges]
    dist = np.zeros(n + 1)
    for live in itertools.product((0, 1), repeat=len(arcs)):
        k = sum(live)
        weight = p**k * (1 - p) ** (len(arcs) - k)
        reached, frontier = {seed}, [seed]
        while frontier:
            u = frontier.pop()
            for (a, b), on in zip(arcs, live, strict=True):
                if on and a == u and b not in reached:
                    reached.add(b)
                    frontier.append(b)
        dist[len(reached)] += weight
    return dist[1:]


def disjoint_copies(edges, n, copies):
    """Edge arrays of ``copies`` disjoint copies of a small graph (copy c has nodes c*n..)."""
    e = np.array(edges)
    offset = (np.arange(copies) * n)[:, None]
    return (e[:, 0][None, :] + offset).ravel(), (e[:, 1][None, :] + offset).ravel()


def reach_per_copy(exposed_nodes: np.ndarray, n: int, copies: int) -> np.ndarray:
    return np.bincount(exposed_nodes // n, minlength=copies)


def chi_square_pvalue(observed_sizes: np.ndarray, expected: np.ndarray) -> float:
    n = len(expected)
    obs = np.bincount(observed_sizes, minlength=n + 1)[1:]
    keep = expected * observed_sizes.size >= 5
    exp = expected[keep] * observed_sizes.size
    o = obs[keep]
    # Pool the rare sizes into one cell so every cell has enough expectation.
    if (~keep).any():
        exp = np.r_[exp, expected[~keep].sum() * observed_sizes.size]
        o = np.r_[o, obs[~keep].sum()]
    return float(stats.chisquare(o, exp * o.sum() / exp.sum()).pvalue)


def test_exact_enumeration_matches_hand_closed_forms():
    p = 0.3
    path = exact_ic_distribution(PATH3, 3, 0, p)
    assert np.allclose(path, [1 - p, p * (1 - p), p * p])
    star = exact_ic_distribution(STAR4, 5, 0, p)
    assert np.allclose(star, [math.comb(4, k) * p**k * (1 - p) ** (4 - k) for k in range(5)])
    tri = exact_ic_distribution(TRIANGLE, 3, 0, p)
    # Each other node: reached directly (p) or via the other ((1-p) p^2 given that one is).
    assert np.isclose((np.arange(1, 4) * tri).sum(), 1 + 2 * (p + (1 - p) * p * p))


@pytest.mark.parametrize(("edges", "n"), [(HOUSE, 5), (PATH3, 3), (STAR4, 5)])
def test_cascade_function_reach_distribution_is_ic(edges, n):
    copies, p = 20_000, 0.4
    src, dst = disjoint_copies(edges, n, copies)
    adj = from_edges(src, dst, n * copies)
    exposed = np.zeros(n * copies, dtype=bool)
    independent_cascade(
        adj, np.arange(copies) * n, p, np.random.default_rng(1), n * copies, exposed=exposed
    )
    sizes = reach_per_copy(np.flatnonzero(exposed), n, copies)
    expected = exact_ic_distribution(edges, n, 0, p)
    assert chi_square_pvalue(sizes, expected) > 0.001
    mean_exact = (np.arange(1, n + 1) * expected).sum()
    se = sizes.std() / math.sqrt(copies)
    assert abs(sizes.mean() - mean_exact) < 4 * se


def _ic_config(edgelist: str, edge_prob: float) -> Params:
    """Word of mouth reduced to IC: certain purchase, everyone forwards, constant edge prob."""
    return Params.from_dict(
        {
            "world": {"owners": 0, "consumers": 2, "days": 1},
            "graph": {"kind": "edgelist", "edgelist_path": edgelist},
            "channels": {"owners": False, "streamer": False, "conventional": True},
            "purchase": {"intercept": 40.0, "price": 0.0},
            "word_of_mouth": {
                "forward_rate": 1.0,
                "advocacy_rate": 0.0,
                "edge_prob": edge_prob,
                "trust_weighted": False,
                "max_generations": 10_000,
            },
        }
    )


def test_model_word_of_mouth_is_ic_on_small_graphs(tmp_path):
    """The model's own word-of-mouth step, seeded by one buyer per copy of the house graph."""
    n, copies, p = 5, 8_000, 0.4
    src, dst = disjoint_copies(HOUSE, n, copies)
    f = tmp_path / "houses.txt"
    f.write_text("\n".join(f"{a} {b}" for a, b in zip(src, dst, strict=True)))
    model = CommerceModel(_ic_config(str(f), p))
    model.begin_day(0)
    seeds = np.arange(copies) * n
    product = np.zeros(copies, dtype=np.int64)
    bought = model.expose(seeds, product, Channel.CONVENTIONAL, Source.SEARCH)
    assert bought.all()
    model.word_of_mouth()
    o = model.orders
    friend = o["source"] == Source.FRIEND
    assert (o["channel"][friend] == Channel.CONVENTIONAL).all()  # the channel travels along
    sizes = 1 + reach_per_copy(o["consumer"][friend], n, copies)
    expected = exact_ic_distribution(HOUSE, n, 0, p)
    assert chi_square_pvalue(sizes, expected) > 0.001


def bass_curve(t, p, q):
    e = np.exp(-(p + q) * t)
    return (1 - e) / (1 + (q / p) * e)


def test_well_mixed_adoption_follows_the_bass_curve():
    """Brief's annual Bass figures (p=0.03, q=0.38) on a time scale of 1/26 year per tick.

    The model is discrete in time; on this scale the discrete recursion differs from the closed
    form by at most 0.0043; one run of 20,000 consumers strays up to ~0.02 from it (early
    randomness shifts the whole S), so the test averages four replicates: tolerance 0.015.
    """
    n, scale, years = 20_000, 26, 12
    p, q = 0.03 / scale, 0.38 / scale
    days = years * scale
    params = Params.from_dict(
        {
            "world": {"consumers": n, "owners": 0, "days": days},
            "graph": {"kind": "well_mixed"},
            "channels": {"owners": False, "streamer": False, "conventional": True},
            "consumers": {"need_rate": 1 - math.exp(-p), "need_concentration": 1e12},
            "conventional": {"search_results": 1},
            "purchase": {"intercept": 40.0, "price": 0.0},
            "delivery": {"lag_min": 0, "lag_max": 0},
            "returns": {"intercept": -50.0, "defect": 0, "misfit": 0, "gap": 0, "impulse": 0},
            "word_of_mouth": {
                "forward_rate": 0.0,
                "advocacy_rate": 1.0,
                "advocacy_threshold": 0.0,
                "edge_prob": q / n,
                "trust_weighted": False,
                "max_generations": 1,
            },
        }
    )
    curves = []
    for seed in range(4):
        orders = run(params.with_overrides({"seed": seed})).orders
        first_day = orders.groupby("consumer")["day"].min().to_numpy()
        curves.append(np.bincount(first_day, minlength=days).cumsum() / n)
    adopted = np.mean(curves, axis=0)
    t = np.arange(1, days + 1)
    assert np.abs(adopted - bass_curve(t, p, q)).max() < 0.015
    # And not trivially: the curve is an S that crosses from 5% to 80% within the run.
    assert adopted[scale] < 0.1 and adopted[-1] > 0.8


def test_ic_reach_on_a_star_matches_its_mean_and_variance():
    """A known closed form: from the hub of a k-star, reach - 1 ~ Binomial(k, p)."""
    k, p = 50, 0.2
    adj = from_edges(np.zeros(k, int), np.arange(1, k + 1), k + 1)
    rng = np.random.default_rng(5)
    sizes = []
    for _ in range(3000):
        gens = independent_cascade(adj, np.array([0]), p, rng, k + 1)
        sizes.append(sum(g[0].size for g in gens))
    sizes = np.array(sizes)
    assert abs(sizes.mean() - k * p) < 4 * math.sqrt(k * p * (1 - p) / sizes.size)
    assert abs(sizes.var() / (k * p * (1 - p)) - 1) < 0.1


def test_empty_graph_cascade_reaches_no_one():
    adj = sp.csr_array((3, 3), dtype=np.int8)
    gens = independent_cascade(adj, np.array([0]), 1.0, np.random.default_rng(0), 3)
    assert sum(g[0].size for g in gens) == 0
