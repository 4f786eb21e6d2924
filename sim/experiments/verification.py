"""Docking and verification experiments (Rand & Rust 2011), shared by the tests and the
validation report (``fishschool validate-model``).

* :func:`exact_ic_distribution`: the exact reach distribution of an Independent Cascade from
  one seed on a small graph, by enumerating every live/dead pattern of its arcs.
* :func:`model_ic_reach`: the model's own word-of-mouth step, reduced to IC (certain purchase,
  every buyer forwards, constant edge probability), seeded once in each of many disjoint copies
  of a small graph: a sample of its reach distribution.
* :func:`reference_ic_reach`: a plain Python IC (breadth first, one coin per arc) on any graph,
  the reference the model's cascade is compared with on the same graph.
* :func:`bass_curve` and :func:`model_bass_adoption`: the closed-form Bass curve and the model
  configured as well-mixed adoption (homogeneous innovation through search, imitation through
  advocates who recommend daily).
"""

from __future__ import annotations

import itertools
import math
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from sim.world.channels import Channel, Source
from sim.world.model import CommerceModel, run
from sim.world.params import Params

HOUSE = [(0, 1), (1, 2), (2, 3), (3, 0), (2, 4), (3, 4)]  # a square with a roof, 5 nodes


def exact_ic_distribution(edges, n: int, seed: int, p: float) -> np.ndarray:
    """P(reach = k) for k = 1..n from ``seed``, enumerating the 2|E| arcs' live patterns.

    >>> exact_ic_distribution([(0, 1)], 2, 0, 0.25).tolist()
    [0.75, 0.25]
    """
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


def ic_params(edgelist: str | Path, edge_prob: float, seed: int = 0) -> Params:
    """The model reduced to IC: certain purchase, everyone forwards, constant edge probability."""
    return Params.from_dict(
        {
            "seed": seed,
            "world": {"consumers": 2, "days": 1},
            "owners": {"count": 0},
            "graph": {"topology": "edgelist", "edgelist_path": str(edgelist)},
            "channels": {"owners": False, "streamer": False, "conventional": True},
            "consumers": {"budget": 1e9, "budget_sigma": 0.0},
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


def model_ic_reach(edges, n: int, p: float, copies: int, seed: int = 0) -> np.ndarray:
    """Reach (seed included) of the model's word of mouth in each of ``copies`` copies of a
    small graph, each seeded by one buyer at its node 0."""
    e = np.array(edges)
    offset = (np.arange(copies) * n)[:, None]
    src, dst = (e[:, 0][None, :] + offset).ravel(), (e[:, 1][None, :] + offset).ravel()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "copies.txt"
        f.write_text("\n".join(f"{a} {b}" for a, b in zip(src, dst, strict=True)))
        model = CommerceModel(ic_params(f, p, seed))
    return _seeded_reach(model, np.arange(copies) * n, n, copies)


def _seeded_reach(model: CommerceModel, seeds: np.ndarray, n: int, copies: int) -> np.ndarray:
    model.begin_day(0)
    bought = model.expose(
        seeds, np.zeros(seeds.size, dtype=np.int64), Channel.CONVENTIONAL, Source.SEARCH
    )
    if not bought.all():
        raise RuntimeError("the IC configuration must make every exposure an order")
    model.word_of_mouth()
    o = model.orders
    friend = o["source"] == Source.FRIEND
    return 1 + np.bincount(o["consumer"][friend] // n, minlength=copies)


def hub_component(adj: sp.csr_array) -> sp.csr_array:
    """The connected component of the best-connected node, relabelled so that it is node 0
    (every node of it has a friend, so an edge list of it keeps every node)."""
    from scipy.sparse.csgraph import breadth_first_order

    hub = int(np.argmax(np.diff(adj.indptr)))
    nodes = breadth_first_order(adj, hub, directed=False, return_predecessors=False)
    return sp.csr_array(adj[nodes][:, nodes])


def model_ic_reach_on_graph(adj: sp.csr_array, p: float, runs: int, seed: int = 0) -> np.ndarray:
    """Reach of the model's word of mouth from node 0 of ``adj`` (connected, no isolated
    node: see :func:`hub_component`), in ``runs`` disjoint copies of the graph."""
    n = adj.shape[0]
    coo = sp.triu(adj).tocoo()
    edges = list(zip(coo.row.tolist(), coo.col.tolist(), strict=True))
    return model_ic_reach(edges, n, p, runs, seed)


def reference_ic_reach(adj: sp.csr_array, p: float, runs: int, seed: int = 0) -> np.ndarray:
    """Reach from node 0 of a plain Python Independent Cascade (the reference)."""
    rng = np.random.default_rng(seed)
    indptr, indices = adj.indptr, adj.indices
    out = np.empty(runs, dtype=np.int64)
    for r in range(runs):
        active = {0}
        frontier = [0]
        while frontier:
            nxt = []
            for u in frontier:
                for v in indices[indptr[u] : indptr[u + 1]]:
                    if v not in active and rng.random() < p:
                        active.add(int(v))
                        nxt.append(int(v))
            frontier = nxt
        out[r] = len(active)
    return out


def bass_curve(t: np.ndarray, p: float, q: float) -> np.ndarray:
    """Share adopted by time t in the Bass model: (1 - e^-(p+q)t) / (1 + (q/p) e^-(p+q)t)."""
    e = np.exp(-(p + q) * np.asarray(t, dtype=float))
    return (1 - e) / (1 + (q / p) * e)


def bass_params(n: int, p: float, q: float, days: int, seed: int = 0) -> Params:
    """The model as well-mixed adoption: innovation p through search (a need arrives with
    chance 1 - e^-p a day and is searched for at once), imitation q through advocates
    recommending daily; certain purchase, budgets that never bind, no returns."""
    return Params.from_dict(
        {
            "seed": seed,
            "world": {"consumers": n, "days": days},
            "owners": {"count": 0},
            "graph": {"topology": "well_mixed"},
            "channels": {"owners": False, "streamer": False, "conventional": True},
            "consumers": {
                "need_rate": 1 - math.exp(-p),
                "need_concentration": 1e12,
                "budget": 1e9,
                "budget_sigma": 0.0,
            },
            "conventional": {"search_results": 1, "search_rate": 1.0},
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


def model_bass_adoption(
    n: int, p: float, q: float, days: int, replicates: int, seed: int = 0
) -> np.ndarray:
    """Share of consumers who have bought by the end of each day, mean over replicates."""
    curves = []
    for r in range(replicates):
        orders = run(bass_params(n, p, q, days, seed + r)).orders
        first_day = orders.groupby("consumer")["day"].min().to_numpy()
        curves.append(np.bincount(first_day, minlength=days).cumsum() / n)
    return np.mean(curves, axis=0)
