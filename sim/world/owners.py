"""Shop owners ("small b"): groups, assortment, learning, training, recruitment and churn.

An owner is a consumer who runs a shop. She holds 1-4 groups of at most 500 members recruited
mostly from her graph neighbourhood (:func:`recruit_groups`); her groups grow as she and her
members invite friends, and satisfied members are recruited as new owners
(:meth:`Owners.add`), or take over the group of an owner who quit (:meth:`Owners.take_over`).
Each day she picks products for
her groups (as many as her activity brings, heavy-tailed across owners) by her *estimate* of
what her members like (:meth:`Owners.pick_products`), learns
from what they keep and return (:meth:`Owners.learn`) and from hearing them out
(:meth:`Owners.listen`), gains skill at the platform's 2b live
sessions and loses it slowly otherwise (:meth:`Owners.train`, :meth:`Owners.forget`), and quits
at a baseline rate or, faster, when her earnings stay low (:meth:`Owners.churn`).

Owners are arrays that grow as owners are recruited; an active owner's groups are contiguous
ids ``group_first[o] .. group_first[o] + groups[o] - 1`` and ``group_size`` counts their
members (a group taken over from a quit owner moves to its new owner).

The estimate is skill-weighted: she picks a category with probability proportional to
``(skill * knowledge + (1 - skill) / C) ** sharpness``, so an unskilled owner picks nearly at
random and a skilled one follows what she has learned.

In the daily schedule: :func:`train_owners` (2b live, 7.8) and :func:`sell_through_owners`
(posts, opens and listening, :func:`owners_listen`; 7.1, 7.2, 7.6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp
from numba import njit

from sim.world import kernels, pieces
from sim.world.channels import Channel, Source
from sim.world.consumers import base_logit
from sim.world.distributions import beta_with_mean
from sim.world.graph import neighbourhood, regions
from sim.world.kernels import AHEAD, prefetch
from sim.world.params import OwnerParams, PlatformParams
from sim.world.purchases import offer_posts
from sim.world.ragged import rank_in_run, run_starts, starts
from sim.world.recruitment import choose_owners

if TYPE_CHECKING:
    from sim.world.consumers import Consumers
    from sim.world.model import CommerceModel

EARNINGS_WINDOW = 30  # days of earnings an owner looks back on when deciding to quit
MAX_POSTS = 50  # products one owner posts in a day at most (more would be spam in a group chat)
RECRUITMENT_ROUNDS = 6  # rounds of local recruitment; later rounds add little


def recruit_groups(
    adj: sp.csr_array | None,
    owner_nodes: np.ndarray,
    p: OwnerParams,
    n: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Form every owner's groups.

    Each owner draws her number of groups (``1 + Binomial(3, (groups_mean - 1) / 3)``) and
    their sizes (lognormal around ``group_size_median``, capped at ``group_size_max``). She fills
    ``local_share`` of the seats from her graph neighbourhood (nearest first, within
    ``neighbourhood_hops``), the rest from consumers anywhere; a consumer joins at most one
    group, and owners are not members. Where the neighbourhood is too small the remaining seats
    are filled from anywhere; where the world runs out of consumers groups stay short.

    Returns
    -------
    (group_owner, group_of) : the owner (index into ``owner_nodes``) of each group, and each
    consumer's group id (-1 for none).

    >>> import numpy as np
    >>> from sim.world.params import OwnerParams
    >>> go, g = recruit_groups(None, np.array([0, 1]), OwnerParams(group_size_median=5,
    ...     group_size_sigma=0), 100, np.random.default_rng(0))
    >>> int((g >= 0).sum()) == 5 * go.size
    True
    """
    m = owner_nodes.size
    group_of = np.full(n, -1, dtype=np.int32)
    if m == 0:
        return np.zeros(0, dtype=np.int32), group_of
    n_groups = 1 + rng.binomial(3, (p.groups_mean - 1.0) / 3.0, m)
    group_owner = np.repeat(np.arange(m, dtype=np.int32), n_groups)
    sizes = np.exp(rng.normal(np.log(p.group_size_median), p.group_size_sigma, group_owner.size))
    sizes = np.clip(np.round(sizes), 1, p.group_size_max).astype(np.int64)
    seats = np.bincount(group_owner, weights=sizes, minlength=m).astype(np.int64)

    member_owner = np.full(n, -1, dtype=np.int64)  # which owner recruited each consumer
    taken = np.zeros(n, dtype=bool)
    taken[owner_nodes] = True
    filled = np.zeros(m, dtype=np.int64)

    if adj is not None and p.local_share > 0:
        local_seats = np.round(seats * p.local_share).astype(np.int64)
        near = neighbourhood(adj, owner_nodes, p.neighbourhood_hops)
        # The (owner ``rows``, consumer ``cols``) pairs in the order neighbourhood lists them.
        rows = np.repeat(np.arange(m, dtype=near.indices.dtype), np.diff(near.indptr))
        cols = near.indices
        prio = rng.random(near.nnz)
        prio += near.data  # nearer first, ties at random
        # Rounds of "each free consumer goes to her nearest owner with seats left; owners keep
        # their nearest up to their quota"; a consumer turned away tries her next owner.
        # (rows, cols and prio are compacted in place below: near is not read again)
        for _ in range(RECRUITMENT_ROUNDS):
            kept = _keep_open_pairs(rows, cols, prio, taken, filled < local_seats)
            rows, cols, prio = rows[:kept], cols[:kept], prio[:kept]
            if rows.size == 0:
                break
            cand = _nearest_owner(cols, prio, n)  # each consumer's nearest owner
            # One float sort key instead of lexsort (several times faster); prio < 8.
            cand = cand[np.argsort(rows[cand] * 8.0 + prio[cand])]
            r = rows[cand]
            ok = rank_in_run(r) < (local_seats[r] - filled[r])
            chosen = cand[ok]
            member_owner[cols[chosen]] = rows[chosen]
            taken[cols[chosen]] = True
            filled += np.bincount(rows[chosen], minlength=m)

    # The remaining seats, from anywhere.
    free = np.flatnonzero(~taken)
    rng.shuffle(free)
    need = np.maximum(seats - filled, 0)
    total = int(min(need.sum(), free.size))
    if total > 0:
        owner_of_seat = np.repeat(np.arange(m), need)
        owner_of_seat = owner_of_seat[rng.permutation(owner_of_seat.size)[:total]]
        member_owner[free[:total]] = owner_of_seat

    # Split each owner's members into her groups: her first group's seats first, by consumer id.
    members = np.flatnonzero(member_owner >= 0)
    # Grouped by owner, ascending within: one sort of (owner, consumer) keys is faster than a
    # stable argsort by owner.
    key = np.sort(member_owner[members] * n + members)
    mo, members = np.divmod(key, n)
    group_first = np.r_[0, np.cumsum(n_groups)[:-1]]
    rank = rank_in_run(mo)
    cum = np.cumsum(sizes)  # group seat boundaries, laid out owner by owner
    owner_seat_start = cum[group_first] - sizes[group_first]
    g = np.searchsorted(cum, owner_seat_start[mo] + rank, side="right")
    group_of[members] = g.astype(np.int32)
    return group_owner, group_of


def _nearest_owner(cols: np.ndarray, prio: np.ndarray, n: int) -> np.ndarray:
    """Each consumer's pair with the least key ``cols * 8 + prio`` (her nearest owner), one per
    consumer, consumers ascending; ``cols``: each pair's consumer (of ``n``).

    A scattered minimum finds it without sorting every pair. Two pairs of one consumer can have
    equal keys (float rounding); then the one an (unstable) argsort of the keys puts first
    wins, so that rare case is done exactly that way.
    """
    at_least = _pairs_at_least(cols, prio, n)
    pair_of = np.full(n, -1, dtype=np.int64)
    pair_of[cols[at_least]] = at_least
    cand = pair_of[pair_of >= 0]
    if cand.size == at_least.size:  # one least pair per consumer: no tie
        return cand
    by_consumer = np.argsort(cols * 8.0 + prio)
    return by_consumer[run_starts(cols[by_consumer])]


@njit(cache=True, nogil=True)
def _keep_open_pairs(
    rows: np.ndarray, cols: np.ndarray, prio: np.ndarray, taken: np.ndarray, room: np.ndarray
) -> int:
    """Keep, in place and in order, the (owner ``rows``, consumer ``cols``, ``prio``) pairs
    whose consumer is not ``taken`` and whose owner has ``room``; returns how many."""
    k = 0
    last = cols.size - 1
    for i in range(cols.size):
        prefetch(taken, cols[min(i + AHEAD, last)])  # (consumers scattered over the world)
        keep = room[rows[i]] & ~taken[cols[i]]
        rows[k], cols[k], prio[k] = rows[i], cols[i], prio[i]  # (k <= i: no branch)
        k += keep
    return k


@njit(cache=True, nogil=True)
def _pairs_at_least(cols: np.ndarray, prio: np.ndarray, n: int) -> np.ndarray:
    """The pairs whose key ``cols * 8 + prio`` is the least of their consumer's (of ``n``),
    ascending: two passes, loading ahead, and no key array as long as the pairs."""
    least = np.full(n, np.inf)
    last = cols.size - 1
    for i in range(cols.size):
        prefetch(least, cols[min(i + AHEAD, last)])
        key = cols[i] * 8.0 + prio[i]
        c = cols[i]
        least[c] = min(least[c], key)
    out = np.empty(cols.size, dtype=np.int64)
    k = 0
    for i in range(cols.size):
        prefetch(least, cols[min(i + AHEAD, last)])
        out[k] = i
        k += cols[i] * 8.0 + prio[i] == least[cols[i]]
    return out[:k]


class Owners:
    """State of all owners, index ``o`` in ``0..m-1``; ``node[o]`` is her consumer id."""

    def __init__(
        self,
        p: OwnerParams,
        node: np.ndarray,
        group_owner: np.ndarray,
        group_size: np.ndarray,
        member_preference_mean: np.ndarray,
        rng: np.random.Generator,
    ):
        self.p = p
        self.m = 0
        c = member_preference_mean.shape[1]
        self.node = np.zeros(0, dtype=np.int64)
        self.active = np.zeros(0, dtype=bool)
        self.skill0 = self.skill = np.zeros(0)
        self.knowledge = np.zeros((0, c))
        self.earnings = np.zeros(0)
        self.earned_today = np.zeros(0)  # net commission booked today (see book_earnings)
        self.sales = np.zeros(0)  # GMV through her links, net of returns
        self.member_days = np.zeros(0)  # members in her active groups, summed over days
        self._window = np.zeros((EARNINGS_WINDOW, 0))
        self.material_until = np.zeros(0, dtype=np.int64)
        self.activity = np.zeros(0)
        self.joined_day = np.zeros(0, dtype=np.int64)
        self.quit_day = np.zeros(0, dtype=np.int64)
        self.groups = np.zeros(0, dtype=np.int64)
        self.group_first = np.zeros(0, dtype=np.int64)
        self.group_owner = np.zeros(0, dtype=np.int32)
        self.group_size = np.zeros(0, dtype=np.int64)
        self._rng = rng.spawn(3)  # skill, knowledge, activity: one stream per attribute
        self.add(node, np.bincount(group_owner, minlength=node.size), member_preference_mean, 0)
        self.group_size[:] = group_size

    def add(self, node: np.ndarray, groups: np.ndarray, taste: np.ndarray, day: int) -> np.ndarray:
        """New owners at consumer ``node``, each with ``groups`` empty groups; ``taste`` is
        what she could know of her members at best (at the start, their mean preference; for
        a recruit, her own). She knows ``owners.knowledge`` of it. Returns their indices."""
        p, k = self.p, node.size
        skill, knowledge, activity = self._rng
        new = np.arange(self.m, self.m + k)
        c = self.knowledge.shape[1]
        s0 = beta_with_mean(skill, p.skill, 4.0, k)
        noise = knowledge.dirichlet(np.ones(c), k)
        know = p.knowledge * taste + (1 - p.knowledge) * noise
        know /= know.sum(axis=1, keepdims=True)
        sigma = p.activity_sigma
        # Activity: how much she posts, heavy-tailed across owners (lognormal, mean 1).
        act = activity.lognormal(-(sigma**2) / 2, sigma, k)
        self.node = np.r_[self.node, node.astype(np.int64)]
        self.active = np.r_[self.active, np.ones(k, dtype=bool)]
        self.skill0 = np.r_[self.skill0, s0]
        self.skill = np.r_[self.skill, s0]
        self.knowledge = np.vstack([self.knowledge, know])
        self.earnings = np.r_[self.earnings, np.zeros(k)]
        self.earned_today = np.r_[self.earned_today, np.zeros(k)]
        self.sales = np.r_[self.sales, np.zeros(k)]
        self.member_days = np.r_[self.member_days, np.zeros(k)]
        self._window = np.hstack([self._window, np.zeros((EARNINGS_WINDOW, k))])
        self.material_until = np.r_[self.material_until, np.full(k, -1, dtype=np.int64)]
        self.activity = np.r_[self.activity, act]
        self.joined_day = np.r_[self.joined_day, np.full(k, day, dtype=np.int64)]
        self.quit_day = np.r_[self.quit_day, np.full(k, -1, dtype=np.int64)]
        first = self.group_owner.size + starts(groups)
        self.group_first = np.r_[self.group_first, first]
        self.groups = np.r_[self.groups, groups]
        self.group_owner = np.r_[self.group_owner, np.repeat(new, groups).astype(np.int32)]
        self.group_size = np.r_[self.group_size, np.zeros(int(groups.sum()), dtype=np.int64)]
        self.m += k
        return new

    def take_over(self, node: np.ndarray, group: np.ndarray, taste: np.ndarray, day: int):
        """Members of a quit owner's groups become owners of the group they are in (one per
        group): the group and its remaining members are theirs. Returns their indices."""
        new = self.add(node, np.zeros(node.size, dtype=np.int64), taste, day)
        self.group_first[new] = group
        self.groups[new] = 1
        self.group_owner[group] = new
        return new

    def members(self) -> np.ndarray:
        """Members of each owner's groups now (a quit owner's members are still counted)."""
        return np.bincount(self.group_owner, weights=self.group_size, minlength=self.m).astype(
            np.int64
        )

    def count_member_day(self) -> None:
        """Add today's members of active owners to ``member_days`` (sales per member-month)."""
        self.member_days += self.members() * self.active

    def emptiest_group(self, owner: np.ndarray) -> np.ndarray:
        """Each owner's group with the fewest members (where her own invitations go)."""
        best = self.group_first[owner].copy()
        for j in range(1, int(self.groups.max(initial=1))):
            g = self.group_first[owner] + j
            has = j < self.groups[owner]
            g = np.where(has, g, best)
            best = np.where(self.group_size[g] < self.group_size[best], g, best)
        return best

    # -- assortment --------------------------------------------------------------------------
    def pick_products(
        self, pick_in_category, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Today's posts: how many products each owner posts and which.

        She posts ``Poisson(products_per_day x activity)`` products (at most
        :data:`MAX_POSTS`), each of a category drawn from her skill-weighted estimate, then a
        product of that category from ``pick_in_category(categories)`` (the platform's
        selection). Returns the products of all owners back to back, and each owner's start
        and count in that array.
        """
        c = self.knowledge.shape[1]
        count = np.minimum(rng.poisson(self.p.products_per_day * self.activity), MAX_POSTS)
        count[~self.active] = 0
        weight = (self.skill[:, None] * self.knowledge + (1 - self.skill[:, None]) / c) ** (
            self.p.pick_sharpness
        )
        cdf = np.cumsum(weight / weight.sum(axis=1, keepdims=True), axis=1)
        owner = np.repeat(np.arange(self.m), count)
        u = rng.random(owner.size)
        category = np.minimum((cdf[owner] < u[:, None]).sum(axis=1), c - 1)
        return pick_in_category(category), starts(count), count

    def open_rate(self, day: int, material_boost: float) -> np.ndarray:
        """Chance a member of each owner's group opens today's posts (2b material helps)."""
        boost = np.where(self.material_until >= day, 1.0 + material_boost, 1.0)
        return np.minimum(1.0, self.p.open_rate * boost)

    # -- learning and training -----------------------------------------------------------------
    def learn(self, owner: np.ndarray, category: np.ndarray, kept: np.ndarray) -> None:
        """Move each owner's estimate towards what her members kept and away from returns.

        One kept order in category c moves her estimate a step ``learning_rate`` towards
        category c; one return shrinks her weight on c by that share. A day's orders are
        applied as their sequential effect, ``1 - (1 - lr) ** k`` for k kept orders, so a busy
        day cannot overshoot.
        """
        if owner.size == 0:
            return
        lr = self.p.learning_rate
        c = self.knowledge.shape[1]
        kept_count = np.zeros_like(self.knowledge)
        np.add.at(kept_count, (owner[kept], category[kept]), 1.0)
        n_kept = kept_count.sum(axis=1, keepdims=True)
        weight = 1.0 - (1.0 - lr) ** n_kept
        target = np.divide(kept_count, n_kept, out=np.zeros_like(kept_count), where=n_kept > 0)
        k = (1.0 - weight) * self.knowledge + weight * target
        returned = np.zeros_like(self.knowledge)
        np.add.at(returned, (owner[~kept], category[~kept]), 1.0)
        k *= (1.0 - lr) ** returned
        k = np.maximum(k, 1e-6 / c)
        self.knowledge = k / k.sum(axis=1, keepdims=True)

    def listen(self, owner: np.ndarray, member: np.ndarray, preference: np.ndarray) -> None:
        """Hear members out (chats, questions): each heard ``member`` (of ``owner``)'s
        preference profile (her row of the consumers' ``preference``) pulls her owner's
        estimate towards it, by ``learning_rate x skill``, so a skilled owner reads her group
        faster and more surely than one who only watches sales."""
        if owner.size == 0:
            return
        heard = np.zeros_like(self.knowledge)
        kernels.add_rows_of(heard, owner, preference, member)
        count = np.bincount(owner, minlength=self.m)[:, None]
        step = 1.0 - (1.0 - self.p.learning_rate * self.skill[:, None]) ** count
        mean = np.divide(heard, count, out=np.zeros_like(heard), where=count > 0)
        self.knowledge = (1.0 - step) * self.knowledge + step * mean
        self.knowledge /= self.knowledge.sum(axis=1, keepdims=True)

    def train(self, attended: np.ndarray, gain: float, day: int, material_days: int) -> None:
        """A 2b live session: attendees gain skill and get material for their next posts."""
        self.skill[attended] += gain * (1.0 - self.skill[attended])
        self.material_until[attended] = day + material_days - 1

    def forget(self) -> None:
        """Without training, skill relaxes towards where she started."""
        self.skill -= self.p.skill_decay * (self.skill - self.skill0)

    # -- earnings and churn ----------------------------------------------------------------------
    def book_earnings(self, day: int) -> None:
        """Close the day's earnings: add them to her total and her 30-day window."""
        self.earnings += self.earned_today
        self._window[day % EARNINGS_WINDOW] = self.earned_today
        self.earned_today = np.zeros(self.m)

    def churn(self, day: int, rng: np.random.Generator) -> np.ndarray:
        """Owners quit with a baseline daily chance ``quit_rate``; past her grace period, an
        owner whose 30-day earnings are below ``churn_threshold`` quits with ``churn_rate``
        more."""
        p = self.p
        low = self._window.sum(axis=0) < p.churn_threshold
        low &= day - self.joined_day >= p.churn_grace_days
        chance = p.quit_rate + np.where(low, p.churn_rate, 0.0)
        quit = np.flatnonzero(self.active & (rng.random(self.m) < chance))
        self.deactivate(quit, day)
        return quit

    def churn_wave(self, share: float, day: int, rng: np.random.Generator) -> np.ndarray:
        """An exogenous wave: ``share`` of the active owners quit at once."""
        active = np.flatnonzero(self.active)
        quit = rng.choice(active, size=int(round(share * active.size)), replace=False)
        self.deactivate(quit, day)
        return quit

    def deactivate(self, owner: np.ndarray, day: int) -> None:
        self.active[owner] = False
        self.quit_day[owner] = day


def place_owners(
    adj: sp.csr_array | None,
    p: OwnerParams,
    n: int,
    rng: np.random.Generator,
    *,
    edge_prob: Callable[[], np.ndarray | float] | np.ndarray | float = 0.0,
    community_size: float = 150.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the owners a run starts with stand (ODD 5.5), and their groups: ``owners.count``
    consumers chosen by the rule ``owners.recruitment``
    (:func:`sim.world.recruitment.choose_owners`; by default the first of a random permutation
    of the ``n`` consumers), each with her groups (:func:`recruit_groups`).

    It reads only the graph, so it can run while the consumers are drawn. ``edge_prob`` (per
    receiver) is the word-of-mouth cascade's, for the ``celf`` rule only; it may be a function
    that returns it, called only then (it reads the consumers' trust). The ``communities``
    rule splits the graph into regions of about ``community_size`` consumers. Every draw is
    from ``rng`` (the world's ``owners`` stream).

    Returns
    -------
    (owner_nodes, group_owner, group_of) : the owners' consumer ids, each group's owner and
    each consumer's group (-1 for none), as :func:`recruit_groups` gives them.
    """
    if p.recruitment == "random":
        owner_nodes = choose_owners("random", adj, p.count, rng, n=n)
    else:
        # The rule's own draws come from a stream of its own, and this stream moves on as the
        # random rule moves it (one permutation), so the groups, skills and activity drawn
        # below are the same draws whatever the rule (common random numbers across rules).
        own = _side_stream(rng)
        rng.permutation(n)
        community = None
        if p.recruitment == "communities" and adj is not None:
            community = regions(adj, int(round(n / community_size)), own)
        prob: np.ndarray | float | None
        if callable(edge_prob):  # (called only for the rule that reads it)
            prob = edge_prob() if p.recruitment == "celf" else None
        else:
            prob = edge_prob
        owner_nodes = choose_owners(
            p.recruitment, adj, p.count, own, n=n, community=community, edge_prob=prob
        )
    return (owner_nodes, *recruit_groups(adj, owner_nodes, p, n, rng))


def first_owners(
    placed: tuple[np.ndarray, np.ndarray, np.ndarray],
    consumers: Consumers,
    p: OwnerParams,
    rng: np.random.Generator,
) -> Owners:
    """The owners a run starts with, from where they stand (:func:`place_owners`; sets
    ``consumers.group``), each knowing part of her members' mean preference. Every draw is
    from ``rng``, the stream ``place_owners`` drew from."""
    owner_nodes, group_owner, group_of = placed
    consumers.group = group_of
    member_mean = _mean_member_preference(
        group_of, consumers.preference, group_owner, owner_nodes.size
    )
    group_size = np.bincount(group_of[group_of >= 0], minlength=group_owner.size)
    return Owners(p, owner_nodes, group_owner, group_size, member_mean, rng)


def _side_stream(rng: np.random.Generator) -> np.random.Generator:
    """A stream independent of ``rng`` that leaves it exactly as it was.

    ``rng.spawn`` would do, but it counts its children, so the owners' own children (skill,
    knowledge, activity: :class:`Owners`) would then be others than under the random rule.
    This child's key, 2**31, is one ``spawn`` never reaches.
    """
    seq = rng.bit_generator.seed_seq
    assert isinstance(seq, np.random.SeedSequence)  # (every stream of the model is one)
    key = (*seq.spawn_key, 2**31)
    return np.random.default_rng(
        np.random.SeedSequence(seq.entropy, spawn_key=key, pool_size=seq.pool_size)
    )


def _mean_member_preference(
    group: np.ndarray, preference: np.ndarray, group_owner: np.ndarray, m: int
) -> np.ndarray:
    """Each of the ``m`` owners' members' mean category preference (what she could learn at
    best), from each consumer's ``group`` (-1: none), her ``preference`` (n x C) and each
    group's owner; ``1 / C`` for an owner without members. Returns an (m x C) array."""
    c = preference.shape[1]
    members = np.flatnonzero(group >= 0)
    if m == 0:
        return np.zeros((0, c))
    owner = group_owner[group[members]]
    # Sums per (owner, category) by one bincount over flat cells instead of np.add.at (slow):
    # the same additions in the same order, so the same sums.
    cell = (owner.astype(np.int64)[:, None] * c + np.arange(c)).ravel()
    total = np.bincount(cell, weights=preference[members].ravel(), minlength=m * c).reshape(m, c)
    count = np.bincount(owner, minlength=m)[:, None]
    return np.where(count > 0, total / np.maximum(count, 1), 1.0 / c)


def train_owners(
    own: Owners, pl: PlatformParams, live_today: bool, day: int, rng: np.random.Generator
) -> None:
    """2b live training (ODD 7.8): every owner's skill relaxes towards its initial value; on a
    2b day (``live_today``) each active owner attends with chance ``live_2b_attendance`` (a
    draw from ``rng`` per owner) and gains skill and material. Changes ``own``."""
    own.forget()
    if own.m and live_today:
        attended = own.active & (rng.random(own.m) < pl.live_2b_attendance)
        own.train(attended, pl.live_2b_skill_gain, day, pl.live_2b_material_days)


def sell_through_owners(model: CommerceModel) -> None:
    """Owners post today's picks; members open the posts (more often the more they trust
    her) and see every product posted; each owner hears out some of those who opened.

    Picks come from the products the owners may sell (``model.owner_index``); the members of
    each active owner are counted into her ``member_days``; a member of an owner who posted a
    stocked product opens with her engagement chance; :func:`owners_listen` runs on those who
    opened; then each opener is offered every product her owner posted
    (:func:`sim.world.purchases.offer_posts`, with the 2b material's hype while it lasts).
    Every draw is from the stream ``owners``. Changes the owners, the recorder (visits), the
    heard members' trust and today's candidates.
    """
    own = model.owners
    if own.m == 0:
        return
    rng = model.streams["owners"]
    products, start, count = own.pick_products(
        lambda cats: model.catalogue.pick_in_category(model.owner_index, cats, rng), rng
    )
    own.count_member_day()
    # An inactive or silent owner's group has nothing to open, nor has one whose picks found
    # no product (every brand of the category left the channel).
    stocked = np.bincount(np.repeat(np.arange(own.m), count)[products >= 0], minlength=own.m)
    # Members of owners who posted a stocked product open with their engagement chance
    # (Consumers.engagement's rule, compiled: _open_posts).
    posted = stocked > 0
    members, owner = _open_posts(model, posted, rng)
    model.recorder.add("visits", Channel.OWNERS, members.size)
    owners_listen(model, members, owner)
    # Each member who opened sees every product her owner posted today, with the hype of her
    # 2b material while it lasts.
    h = model.params.hype
    hype = np.where(own.material_until >= model.day, h.material, h.post)
    offer_posts(model, members, owner, start, count, products, stocked, hype)


def _open_posts(
    model: CommerceModel, posted: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The members of owners who ``posted`` who open the posts, and their owners, in consumer
    order: :func:`sim.world.kernels.open_posts` over the consumers, in two pieces on a
    large world (:mod:`sim.world.pieces`; the second piece's draws follow the first's)."""
    own, con = model.owners, model.consumers
    group, trust = con.group, con.trust[Source.OWNER]
    logit = base_logit(own.open_rate(model.day, model.params.platform.live_2b_material))
    initial, slope = con.initial_trust[Source.OWNER], np.float32(con.engagement_trust)

    def count(piece: slice) -> int:
        return kernels.posted_members(group[piece], own.group_owner, posted)

    def opening(piece: slice, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return kernels.open_posts(
            group[piece], own.group_owner, posted, logit, trust[piece], initial, slope, u
        )

    cut = pieces.halves(group.size)
    if cut == group.size:
        return opening(slice(None), rng.random(count(slice(None))))
    first, second = slice(cut), slice(cut, None)
    before, after = pieces.both(lambda: count(first), lambda: count(second))
    u = rng.random(before + after)
    (m1, o1), (m2, o2) = pieces.both(
        lambda: opening(first, u[:before]), lambda: opening(second, u[before:])
    )
    return np.concatenate([m1, m2 + cut]), np.concatenate([o1, o2])


def owners_listen(model: CommerceModel, openers: np.ndarray, owner: np.ndarray) -> None:
    """Each active owner hears out ``owners.listening`` of today's ``openers`` of her posts
    (``owner``: whose posts each opened), in expectation, all of them when fewer opened
    (stream ``owners``): each heard member's taste teaches her (:meth:`Owners.listen`), and
    being heard out moves her trust in her owner towards ``feedback.heard_satisfaction``."""
    if openers.size == 0:
        return
    opened = np.bincount(owner, minlength=model.owners.m)
    chance = np.minimum(1.0, model.params.owners.listening / np.maximum(opened[owner], 1))
    heard = model.streams["owners"].random(openers.size) < chance
    model.owners.listen(owner[heard], openers[heard], model.consumers.preference)
    # Being heard out is an experience of its own: trust in her owner moves towards
    # feedback.heard_satisfaction (the long maintenance the article credits owners with).
    fb = model.params.feedback
    who = openers[heard]
    heard_value = np.full(who.size, fb.heard_satisfaction)
    model.consumers.update_trust(who, Source.OWNER, heard_value, fb.trust_gain, fb.trust_loss)
