"""The social graph and owners' groups: structure the brief asks for."""

import networkx as nx
import numpy as np
import pytest

from sim.world.graph import community_graph, from_edges, load_edgelist, neighbourhood
from sim.world.owners import recruit_groups
from sim.world.params import OwnerParams, ParameterError


@pytest.fixture(scope="module")
def graph():
    return community_graph(20_000, 10, 150, 0.15, 0.9, 0.3, np.random.default_rng(0))


def test_graph_is_symmetric_simple_and_near_the_target_degree(graph):
    adj, _ = graph
    assert (adj != adj.T).nnz == 0
    assert adj.diagonal().sum() == 0
    assert adj.max() == 1
    assert 9.3 < adj.sum() / adj.shape[0] < 10.5


def test_graph_is_clustered_heavy_tailed_and_has_communities(graph):
    adj, community = graph
    g = nx.from_scipy_sparse_array(adj)
    # Clustering far above a random graph of the same density (~ k/n = 0.0005).
    assert nx.average_clustering(g) > 0.1
    deg = np.diff(adj.indptr)
    assert deg.max() > 5 * deg.mean()  # heavy upper tail
    coo = adj.tocoo()
    within = (community[coo.row] == community[coo.col]).mean()
    assert within > 0.6  # most friendships inside communities


def test_from_edges_drops_loops_and_duplicates():
    a = from_edges(np.array([0, 0, 1, 2]), np.array([1, 1, 0, 2]), 3)
    assert a.nnz == 2 and a[0, 1] == 1 and a[1, 0] == 1


def test_neighbourhood_distances():
    path = from_edges(np.arange(5), np.arange(1, 6), 6)  # 0-1-2-3-4-5
    d = neighbourhood(path, np.array([0, 3]), 2).toarray()
    assert d[0].tolist() == [0, 1, 2, 0, 0, 0]
    assert d[1].tolist() == [0, 2, 1, 0, 1, 2]


def test_load_edgelist_relabels_numerically(tmp_path):
    f = tmp_path / "edges.csv"
    f.write_text("# a comment\n10,9\n9 2\n\n2,10\n")
    adj, labels = load_edgelist(f)
    assert labels.tolist() == [2, 9, 10]
    assert adj.nnz == 6


def test_load_edgelist_errors(tmp_path):
    with pytest.raises(ParameterError, match="file not found"):
        load_edgelist(tmp_path / "nope.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2\n3\n")
    with pytest.raises(ParameterError, match=r"bad\.txt:2: an edge needs two node ids"):
        load_edgelist(bad)


def test_groups_respect_the_cap_and_are_mostly_local(graph):
    adj, _ = graph
    rng = np.random.default_rng(1)
    owners = rng.permutation(adj.shape[0])[:100]
    p = OwnerParams(group_size_median=300, group_size_sigma=1.0)
    group_owner, group_of = recruit_groups(adj, owners, p, adj.shape[0], rng)
    sizes = np.bincount(group_of[group_of >= 0], minlength=group_owner.size)
    assert sizes.max() <= 500
    per_owner = np.bincount(group_owner, minlength=owners.size)
    assert per_owner.min() >= 1 and per_owner.max() <= 4
    assert not (group_of[owners] >= 0).any()  # owners are not members
    # Members within 3 hops of their owner: most of them, far above a random draw.
    near = neighbourhood(adj, owners, 3)
    members = np.flatnonzero(group_of >= 0)
    o = group_owner[group_of[members]]
    local = np.asarray(near[o, members]).ravel() > 0
    assert local.mean() > 0.6


def test_well_mixed_groups_fill_exactly():
    p = OwnerParams(group_size_median=20, group_size_sigma=0.0, groups_mean=1.0)
    group_owner, group_of = recruit_groups(None, np.arange(10), p, 1000, np.random.default_rng(0))
    assert np.bincount(group_of[group_of >= 0]).tolist() == [20] * 10


def test_owner_learning_moves_towards_kept_categories_without_overshoot():
    from sim.world.owners import Owners

    p = OwnerParams(learning_rate=0.1, skill=0.5)
    prefs = np.full((2, 4), 0.25)
    own = Owners(
        p, np.array([0, 1]), np.array([0, 1]), np.zeros(2, int), prefs, np.random.default_rng(0)
    )
    before = own.knowledge.copy()
    # Owner 0: a very busy day, 100 kept orders in category 2. Owner 1: returns in category 1.
    owner = np.r_[np.zeros(100, int), np.ones(5, int)]
    category = np.r_[np.full(100, 2), np.full(5, 1)]
    kept = np.r_[np.ones(100, bool), np.zeros(5, bool)]
    own.learn(owner, category, kept)
    assert np.allclose(own.knowledge.sum(axis=1), 1.0)
    assert own.knowledge[0, 2] > 0.99  # converged on category 2 ...
    assert (own.knowledge[0] > 0).all()  # ... without wiping the others out below zero
    assert own.knowledge[1, 1] < before[1, 1]  # returns push the estimate away


def test_streamer_lineup_never_repeats_a_product():
    from sim.world.brands import Catalogue
    from sim.world.params import BrandParams, StreamerParams, WorldParams
    from sim.world.streamer import MegaStreamer

    class Host:  # the minimum a Mesa agent needs from its model
        import mesa

        model = mesa.Model(rng=0)

    cat = Catalogue(
        WorldParams(brands=20, products_per_brand=10), BrandParams(), np.random.default_rng(0)
    )
    s = MegaStreamer(Host.model, StreamerParams(products_per_session=50, vetting_capacity=0))
    lineup = s.build_lineup(cat, np.ones(cat.n, bool), np.random.default_rng(1))
    assert lineup.size == 50 and np.unique(lineup).size == 50
    s = MegaStreamer(Host.model, StreamerParams(products_per_session=300, vetting_capacity=0))
    lineup = s.build_lineup(cat, np.ones(cat.n, bool), np.random.default_rng(1))
    assert lineup.size == 200 and np.unique(lineup).size == 200  # every product, once
