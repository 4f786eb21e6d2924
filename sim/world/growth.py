"""How the networks grow and shrink: invitations and recruitment (ODD 7.11), churn, leaving
groups and unfollowing (ODD 7.7).

Groups grow by invitation: members invite friends (more often the more they trust their
owner) and owners invite friends to their emptiest group; satisfied members are recruited as
new owners, the platform's referral model (:func:`grow_network`). Owners quit, distrustful
members leave their groups and distrustful followers unfollow the streamer
(:func:`churn_and_unfollow`). Owners' own churn rules are :meth:`sim.world.owners.Owners.churn`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sim.world import kernels
from sim.world.channels import Channel, Source
from sim.world.consumers import Consumers
from sim.world.graph import random_neighbour
from sim.world.owners import Owners
from sim.world.ragged import rank_in_run

if TYPE_CHECKING:
    from sim.world.model import CommerceModel


def grow_network(model: CommerceModel) -> None:
    """Members invite friends to their group (more often the more they trust their owner),
    owners invite friends to their emptiest group, and satisfied members are recruited as
    new owners (the platform's referral model). Only with ``channels.owners``.

    A friend joins if she is not an owner and in no active owner's group (members of an
    owner who quit are free again), the group is below ``owners.group_size_max``, and a
    draw against her trust in friends says yes; her trust in the new owner starts at the
    initial mean. A recruit leaves her group and starts with empty groups of her own, which
    she and her new members fill by invitation (:func:`recruit`).

    Every draw is from the stream ``growth``. Changes the consumers' ``group`` and trust in
    their owner, the owners (new rows, ``group_size``, ``group_owner``), ``model.is_owner`` and
    the recorder (joined members, recruited owners).
    """
    own, con, p = model.owners, model.consumers, model.params.owners
    if not model.params.channels.owners or own.m == 0:
        return
    rng = model.streams["growth"]
    trust = con.trust[Source.OWNER]
    # Each active owner (and each group of an owner who quit) has one satisfied member in
    # view, at random, and recruits her with daily chance recruit_rate: recruitment grows
    # with the number of owners, not with the size of their groups. (Compiled passes over
    # the consumers: sim.world.kernels.)
    bar = np.float32(p.recruit_trust)  # compared in float32, as numpy compares trust
    pool, live = kernels.count_recruitment(con.group, own.group_owner, own.active, trust, bar)
    key = rng.random(pool)
    in_view = kernels.recruitment_in_view(
        con.group, own.group_owner, own.active, trust, bar, own.m, key
    )
    recruits = in_view[rng.random(in_view.size) < p.recruit_rate]
    inviters, groups = kernels.member_invitations(
        con.group, own.group_owner, own.active, trust, np.float32(p.invite_rate), rng.random(live)
    )
    active = np.flatnonzero(own.active)
    by_owner = np.repeat(active, rng.poisson(p.owner_invites, active.size))
    inviter = np.r_[inviters, own.node[by_owner]]
    target = np.r_[groups, own.emptiest_group(by_owner)]
    friend = random_neighbour(model.graph, inviter, model.n, rng)
    accept = rng.random(friend.size) < con.trust[Source.FRIEND, np.maximum(friend, 0)]
    recruit(model, recruits, rng)
    ok = accept & (friend >= 0)
    ok[ok] &= ~model.is_owner[friend[ok]] & ~in_active_group(con, own, friend[ok])
    friend, target = friend[ok], target[ok]
    _, first = np.unique(friend, return_index=True)  # one group per friend a day
    friend, target = friend[first], target[first]
    order = np.argsort(target, kind="stable")
    friend, target = friend[order], target[order]
    room = p.group_size_max - own.group_size[target]
    join = own.active[own.group_owner[target]] & (rank_in_run(target) < room)
    move_to_group(con, own, friend[join], target[join])
    model.recorder.add("joined_members", Channel.OWNERS, int(join.sum()))


def recruit(model: CommerceModel, recruits: np.ndarray, rng: np.random.Generator) -> None:
    """Satisfied members ``recruits`` become owners: a member of an active owner leaves her
    group and starts empty groups of her own (``1 + Binomial(3, .)`` of them, drawn from
    ``rng``); a member of a quit owner's group takes it over (at most one recruit per such
    group: see :func:`grow_network`), and its members' trust in their new owner starts at the
    initial mean, as for anyone joining a group. Changes the owners, the consumers' groups and
    trust, ``model.is_owner`` and the recorder."""
    if recruits.size == 0:
        return
    own, con, p = model.owners, model.consumers, model.params.owners
    group = con.group[recruits]
    orphan = ~own.active[own.group_owner[group]]
    heirs, heir_group, starters = recruits[orphan], group[orphan], recruits[~orphan]
    move_to_group(con, own, recruits, np.full(recruits.size, -1))
    groups = 1 + rng.binomial(3, (p.groups_mean - 1.0) / 3.0, starters.size)
    own.add(starters, groups, con.preference[starters].astype(np.float64), model.day)
    own.take_over(heirs, heir_group, con.preference[heirs].astype(np.float64), model.day)
    if heir_group.size:  # (a scan of every consumer: only on days a group changes hands)
        chosen = np.zeros(own.group_owner.size, dtype=bool)
        chosen[heir_group] = True
        kernels.reset_in_groups(
            con.trust[Source.OWNER], con.group, chosen, con.initial_trust[Source.OWNER]
        )
    new = np.r_[starters, heirs]
    model.is_owner[new] = True
    model.recorder.add("recruited_owners", Channel.OWNERS, new.size)


def in_active_group(con: Consumers, own: Owners, who: np.ndarray) -> np.ndarray:
    """Per consumer of ``who``: is she a member of an active owner's group?"""
    g = con.group[who]
    return (g >= 0) & own.active[own.group_owner[np.maximum(g, 0)]]


def move_to_group(con: Consumers, own: Owners, who: np.ndarray, group: np.ndarray) -> None:
    """Consumers ``who`` leave their group (if any) for ``group`` (-1: none). Changes
    ``con.group``, ``own.group_size`` and, for those who joined a group, their trust in their
    (new) owner, which starts at the initial mean."""
    old = con.group[who]
    np.subtract.at(own.group_size, old[old >= 0], 1)
    np.add.at(own.group_size, group[group >= 0], 1)
    con.group[who] = group
    joined = group >= 0
    con.trust[Source.OWNER, who[joined]] = con.initial_trust[Source.OWNER]


def churn_and_unfollow(model: CommerceModel) -> None:
    """Owners book the day's earnings and may quit (:meth:`sim.world.owners.Owners.churn`,
    stream ``churn``); a member whose trust in her owner is below ``owners.leave_threshold``
    leaves her group with chance ``owners.leave_rate`` (stream ``leave``); a follower whose
    trust in the streamer is below ``streamer.unfollow_threshold`` unfollows with chance
    ``streamer.unfollow_rate`` (stream ``unfollow``). Changes the owners, the consumers'
    groups and ``follows``, and the recorder (quit owners)."""
    con, own = model.consumers, model.owners
    if own.m:
        own.book_earnings(model.day)
        quit = own.churn(model.day, model.streams["churn"])
        model.recorder.add("quit_owners", Channel.OWNERS, quit.size)
        po = model.params.owners
        u = model.streams["leave"].random(np.count_nonzero(con.group >= 0))
        leavers = kernels.leaving_members(
            con.group, con.trust[Source.OWNER], np.float32(po.leave_threshold), po.leave_rate, u
        )
        move_to_group(con, own, leavers, np.full(leavers.size, -1))
    fans = np.flatnonzero(con.follows)
    unhappy = con.trust[Source.STREAMER, fans] < model.params.streamer.unfollow_threshold
    con.follows[
        fans[
            unhappy
            & (model.streams["unfollow"].random(fans.size) < model.params.streamer.unfollow_rate)
        ]
    ] = False
