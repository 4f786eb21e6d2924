"""The fast world-build code gives what the straightforward versions give, draw for draw.

Each reference below is the plain version the fast one replaced (a full sort, np.searchsorted,
a scan of every edge, a float matrix product, np.add.at). Same inputs and seed: the same arrays
(and index dtypes where the world keeps them) and the generator left in the same state.
"""

import numpy as np
import pytest
import scipy.sparse as sp

from sim.world.graph import (
    _right_search,
    _sort_by_node,
    community_graph,
    from_edges,
    neighbourhood,
    regions,
)
from sim.world.owners import _mean_member_preference, _nearest_owner
from sim.world.ragged import run_starts


def ref_from_edges(src, dst, n):
    keep = src != dst
    src, dst = src[keep], dst[keep]
    rows = np.concatenate([src, dst]).astype(np.int32)
    cols = np.concatenate([dst, src]).astype(np.int32)
    key = np.unique(rows.astype(np.int64) * n + cols)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(key // n, minlength=n), out=indptr[1:])
    data = np.ones(key.size, dtype=np.int8)
    return sp.csr_array((data, (key % n).astype(np.int32), indptr), shape=(n, n))


def ref_community_graph(n, mean_degree, community_size, mixing, degree_sigma, closure, rng):
    sigma = 0.6
    mu = np.log(community_size) - sigma**2 / 2
    draws, total = [], 0
    while total < n:
        size = max(16, int(n / max(community_size, 1)))
        draw = np.maximum(2, rng.lognormal(mu, sigma, size=size)).astype(np.int64)
        draws.append(draw)
        total += int(draw.sum())
    sizes = np.concatenate(draws)
    ends = np.cumsum(sizes)
    k = int(np.searchsorted(ends, n)) + 1
    sizes = sizes[:k]
    sizes[-1] -= int(ends[k - 1] - n)
    community = np.repeat(np.arange(k, dtype=np.int32), sizes)
    rng.shuffle(community)
    theta = rng.lognormal(0.0, degree_sigma, size=n)
    m_total = n * mean_degree / 2.0
    m_base = int(round(m_total * (1.0 - closure)))
    order = np.argsort(community, kind="stable")
    cum = np.cumsum(theta[order])
    first = np.searchsorted(community[order], np.arange(k), side="left")
    last = np.searchsorted(community[order], np.arange(k), side="right")
    cum0 = np.where(first > 0, cum[np.maximum(first - 1, 0)], 0.0)
    cum1 = cum[last - 1]

    def node(x):
        return order[np.searchsorted(cum, x, side="right").clip(0, n - 1)]

    def base_edges(m):
        u = node(rng.random(m) * cum[-1])
        local = rng.random(m) >= mixing
        v = np.empty(m, dtype=np.int64)
        cu = community[u[local]]
        v[local] = node(cum0[cu] + rng.random(cu.size) * (cum1[cu] - cum0[cu]))
        v[~local] = node(rng.random(int((~local).sum())) * cum[-1])
        return u, v

    src, dst = base_edges(m_base)
    adj = ref_from_edges(src, dst, n)
    m_close = int(round(m_total * closure))
    if m_close > 0:
        deg = np.diff(adj.indptr)
        hubs = np.flatnonzero(deg >= 2)
        if hubs.size:
            w = hubs[rng.integers(0, hubs.size, m_close)]
            d = deg[w]
            i = rng.integers(0, d)
            j = (i + 1 + rng.integers(0, d - 1)) % d
            src = np.concatenate([src, adj.indices[adj.indptr[w] + i]])
            dst = np.concatenate([dst, adj.indices[adj.indptr[w] + j]])
            adj = ref_from_edges(src, dst, n)
    missing = int(m_total - adj.nnz / 2)
    if missing > 0:
        extra_src, extra_dst = base_edges(missing)
        adj = ref_from_edges(np.r_[src, extra_src], np.r_[dst, extra_dst], n)
    return adj, community


def ref_regions(adj, n_regions, rng):
    n = adj.shape[0]
    label = np.full(n, -1, dtype=np.int64)
    seeds = rng.choice(n, size=min(max(n_regions, 1), n), replace=False)
    label[seeds] = np.arange(seeds.size)
    row = np.repeat(np.arange(n), np.diff(adj.indptr))
    while True:
        open_edge = (label[row] < 0) & (label[adj.indices] >= 0)
        if not open_edge.any():
            break
        rows, labels = row[open_edge], label[adj.indices[open_edge]]
        order = rng.permutation(rows.size)
        _, first = np.unique(rows[order], return_index=True)
        label[rows[order][first]] = labels[order][first]
    rest = label < 0
    label[rest] = rng.integers(0, seeds.size, int(rest.sum()))
    return label


def ref_neighbourhood(adj, sources, hops):
    n, m = adj.shape[0], sources.size
    a = adj.astype(np.float32)
    seen = sp.csr_array((np.ones(m, dtype=np.float32), (np.arange(m), sources)), shape=(m, n))
    frontier, dist = seen, sp.csr_array((m, n), dtype=np.float32)
    for h in range(1, hops + 1):
        reach = (frontier @ a).astype(bool).astype(np.float32)
        new = reach - reach.multiply(seen.astype(bool))
        new.eliminate_zeros()
        new = new.astype(bool).astype(np.float32)
        dist, seen, frontier = dist + new * h, seen + new, new
    dist.eliminate_zeros()
    return dist.tocsr()


def same_csr(a, b, index_dtype=True):
    a.sort_indices()
    b.sort_indices()
    dtypes = a.indices.dtype == b.indices.dtype and a.indptr.dtype == b.indptr.dtype
    return (
        (dtypes or not index_dtype)
        and a.shape == b.shape
        and a.data.dtype == b.data.dtype
        and np.array_equal(a.indptr, b.indptr)
        and np.array_equal(a.indices, b.indices)
        and np.array_equal(a.data, b.data)
    )


@pytest.mark.parametrize("n, m", [(3, 20), (50, 200), (2000, 30_000)])
def test_from_edges_matches_sorting_all_keys(n, m):
    rng = np.random.default_rng(n)
    src, dst = rng.integers(0, n, m), rng.integers(0, n, m)
    assert same_csr(from_edges(src, dst, n), ref_from_edges(src, dst, n))


@pytest.mark.parametrize(
    "n, md, cs, mix, sigma, closure",
    [
        (3000, 10, 150, 0.15, 0.9, 0.3),
        (3000, 2, 5, 0.0, 0.0, 0.0),
        (2000, 8, 50, 1.0, 2.0, 0.9),
        (2000, 30, 1e6, 0.5, 0.5, 0.5),
    ],
)
def test_community_graph_is_the_same_draw_for_draw(n, md, cs, mix, sigma, closure):
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    adj, community = community_graph(n, md, cs, mix, sigma, closure, r1)
    ref_adj, ref_community = ref_community_graph(n, md, cs, mix, sigma, closure, r2)
    assert same_csr(adj, ref_adj)
    assert np.array_equal(community, ref_community)
    assert r1.bit_generator.state == r2.bit_generator.state


def test_right_search_is_searchsorted():
    rng = np.random.default_rng(0)
    for n, sigma in [(1, 0.0), (7, 0.9), (5000, 0.9), (5000, 3.0)]:
        cum = np.cumsum(rng.lognormal(0, sigma, n))
        x = np.r_[rng.random(10_000) * cum[-1], cum, np.nextafter(cum, 0), 0.0, 2 * cum[-1]]
        assert np.array_equal(_right_search(cum)(x), np.searchsorted(cum, x, side="right"))


@pytest.fixture(scope="module")
def small_graph():
    return ref_community_graph(3000, 10, 150, 0.15, 0.9, 0.3, np.random.default_rng(1))[0]


@pytest.mark.parametrize("n_regions", [1, 20, 1500, 3000])
def test_regions_is_the_same_draw_for_draw(small_graph, n_regions):
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    got = regions(small_graph, n_regions, r1)
    assert np.array_equal(got, ref_regions(small_graph, n_regions, r2))
    assert got.dtype == np.int64
    assert r1.bit_generator.state == r2.bit_generator.state


@pytest.mark.parametrize("hops", [1, 2, 3, 4])
def test_neighbourhood_matches_the_float_product(small_graph, hops):
    sources = np.random.default_rng(hops).permutation(3000)[:40]
    got, ref = (
        neighbourhood(small_graph, sources, hops),
        ref_neighbourhood(small_graph, sources, hops),
    )
    assert got.has_sorted_indices
    assert same_csr(got, ref, index_dtype=False)  # (int32 indices where they fit)


@pytest.mark.parametrize("n", [100, 3000, 70_000, 2**24 + 5])  # 1, 2, 3 and 4 radix passes
@pytest.mark.parametrize("size", [1, 63, 64, 1000])
def test_the_balls_radix_sort_is_a_sort(n, size):
    rng = np.random.default_rng(size)
    nodes = rng.choice(n, size=min(size, n), replace=False)
    key = nodes * 16 + rng.integers(1, 16, nodes.size)
    bits = max(1, int(n - 1).bit_length())
    got = key.copy()
    _sort_by_node(got, np.empty(key.size, dtype=np.int64), bits)
    assert np.array_equal(got, np.sort(key))


def test_nearest_owner_picks_as_the_argsort_did_ties_included():
    rng = np.random.default_rng(0)
    for trial in range(200):
        owners, n = rng.integers(1, 300), rng.integers(1, 2000)
        rows, cols = np.nonzero(rng.random((owners, n)) < rng.random())
        # Quarter steps make exact ties (the argsort then decides) common.
        frac = rng.integers(0, 4, rows.size) / 4 if trial % 2 else rng.random(rows.size)
        prio = rng.integers(1, 4, rows.size) + frac
        key = cols * 8.0 + prio
        by_consumer = np.argsort(key)
        want = by_consumer[run_starts(cols[by_consumer])]
        assert np.array_equal(_nearest_owner(cols.astype(np.int32), prio, n), want)


def test_mean_member_preference_sums_as_add_at_did():
    rng = np.random.default_rng(0)
    n, m, c = 5000, 40, 8
    group_owner = np.repeat(np.arange(m, dtype=np.int32), rng.integers(1, 4, m))
    # Only the first half of the groups get members: the last owners have none.
    group = rng.integers(-1, group_owner.size // 2, n).astype(np.int32)
    preference = rng.dirichlet(np.ones(c), n).astype(np.float32)
    members = np.flatnonzero(group >= 0)
    owner = group_owner[group[members]]
    total = np.zeros((m, c))
    np.add.at(total, owner, preference[members])
    count = np.bincount(owner, minlength=m)[:, None]
    want = np.where(count > 0, total / np.maximum(count, 1), 1.0 / c)
    assert np.array_equal(_mean_member_preference(group, preference, group_owner, m), want)
