"""The model: brands, owners, consumers, a mega-streamer and the platform on one social graph.

:class:`CommerceModel` is a :class:`mesa.Model` whose :meth:`~CommerceModel.step` is the daily
schedule of docs/ODD.md (section 3)::

    needs arrive -> events -> 2b live training -> owners post (and listen) -> streamer session
    -> search -> the day's purchases, all channels together -> word of mouth
    -> deliveries and returns -> groups grow, owners recruited -> churn and unfollowing -> record

Consumers and owners are populations held in numpy arrays (:mod:`sim.world.consumers`,
:mod:`sim.world.owners`) and the graph is a CSR adjacency (:mod:`sim.world.graph`), so a tick
is array work.
Brands, the streamer and the platform are Mesa agents. Every exposure passes through one place,
:meth:`CommerceModel.offer`, which records it and draws its purchase; the day's candidate
purchases of every channel are then decided together, in a random order no channel controls,
against shared needs and budgets (:meth:`CommerceModel.settle`, :mod:`sim.world.demand`); every
delivery passes through :meth:`CommerceModel.deliver`.

Random streams: the seed is split (numpy ``SeedSequence``) into independent streams for the
graph, consumers, catalogue, owners, followers and the daily dynamics, so two runs with the same
seed share the same world even when their channel mix or levers differ; the dynamics stream is
split again into one stream per process (:data:`PROCESS_STREAMS`), and each process gets a
fresh child stream every day, so a lever that changes one channel's draws leaves the others'
draws in place, and a day on which two runs drew differently does not shift every later day's
draws (common random numbers).

Example
-------
>>> from sim.world.params import ParameterError, Params
>>> params = Params.from_dict({"world": {"consumers": 2000, "days": 5}, "owners": {"count": 10}})
>>> result = run(params)
>>> sorted(result.summary["channel"].unique())
['all', 'conventional', 'owners', 'streamer']
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import mesa
import numpy as np
import pandas as pd

from sim.world import funnel, money
from sim.world.brands import Brand, Catalogue
from sim.world.cascade import independent_cascade
from sim.world.channels import CHANNELS, Channel, Source
from sim.world.consumers import Consumers
from sim.world.demand import MONTH
from sim.world.graph import build_graph, random_neighbour
from sim.world.metrics import TickRecorder, summarise
from sim.world.money import BrandAccounts, Terms
from sim.world.orders import KEPT, PENDING, RETURNED, Orders
from sim.world.owners import Owners, recruit_groups
from sim.world.params import ParameterError, Params
from sim.world.platform import Platform
from sim.world.ragged import offsets, rank_in_run, run_starts
from sim.world.service import ServiceDesks
from sim.world.streamer import MegaStreamer

# Child streams of the run's SeedSequence, one per part of the world and one for the dynamics.
_STREAMS = ("graph", "consumers", "catalogue", "owners", "followers", "dynamics")
# The dynamics stream is split again, one stream per process, so a lever that changes one
# channel's draws leaves the other channels' draws where they were (common random numbers).
PROCESS_STREAMS = (
    "market",
    "events",
    "training",
    "owners",
    "streamer",
    "search",
    "wom",
    "churn",
    "leave",
    "unfollow",
    "migration",
    "growth",
    "follow",
    "contracts",
)
CONSUMER_STATES = (
    "unreached",
    "exposed by owners",
    "exposed by streamer",
    "exposed by search",
    "bought",
    "returned",
)

_CHANNEL_STREAM = {
    Channel.OWNERS: "owners",
    Channel.STREAMER: "streamer",
    Channel.CONVENTIONAL: "search",
}


class CommerceModel(mesa.Model):
    """One simulated world. Configure with a :class:`~sim.world.params.Params`; call
    :meth:`step`."""

    def __init__(self, params: Params | None = None) -> None:
        p = params if params is not None else Params()
        streams = dict(
            zip(_STREAMS, np.random.SeedSequence(p.seed).spawn(len(_STREAMS)), strict=True)
        )
        super().__init__(rng=np.random.default_rng(streams["dynamics"]))
        self._process_seeds = dict(
            zip(PROCESS_STREAMS, streams["dynamics"].spawn(len(PROCESS_STREAMS)), strict=True)
        )
        self.streams = {name: np.random.default_rng(s) for name, s in self._process_seeds.items()}
        self.params = p
        self.day = 0
        world = {k: np.random.default_rng(s) for k, s in streams.items() if k != "dynamics"}

        # The social graph and the consumers on it.
        self.graph = build_graph(p.graph, p.world.consumers, world["graph"])
        n = self.graph.shape[0] if self.graph is not None else p.world.consumers
        if p.owners.count > n:
            raise ParameterError(f"owners.count = {p.owners.count} exceeds the {n} consumers")
        self.n = n
        self.consumers = Consumers(
            p.consumers, n, p.world.categories, world["consumers"], self.graph
        )
        self.demand = self.consumers.demand

        # Brands and their products; the platform's selection of the brands owners may sell;
        # the brands contracted with the streamer; every brand lists in search.
        rng_cat = world["catalogue"]
        self.catalogue = Catalogue(p.world, p.brands, rng_cat)
        brand_order = rng_cat.permutation(p.world.brands)
        self.brands = [
            Brand(self, b, np.flatnonzero(self.catalogue.brand == b)) for b in range(p.world.brands)
        ]
        self.platform = Platform(self, p.platform)
        admitted = self.platform.select(self.catalogue, rng_cat)
        # A screened streamer signs only brands the platform admitted (a lever).
        self._streamer_eligible = admitted if p.streamer.screened else np.ones_like(admitted)
        eligible_order = brand_order[self._streamer_eligible[brand_order]]
        contracted = eligible_order[: int(round(p.streamer.brand_share * p.world.brands))]
        contracts = np.ones((p.world.brands, len(CHANNELS)), dtype=bool)
        contracts[:, Channel.OWNERS] = admitted
        contracts[:, Channel.STREAMER] = np.isin(np.arange(p.world.brands), contracted)
        self.accounts = BrandAccounts(contracts, p.brands.loss_tolerance)
        self.terms = Terms.from_params(p)
        self.desks = ServiceDesks(p.after_sales, p.world.brands, n / 100_000)
        self._index_products()

        # Owners and their groups.
        rng_own = world["owners"]
        owner_nodes = rng_own.permutation(n)[: p.owners.count]
        group_owner, group_of = recruit_groups(self.graph, owner_nodes, p.owners, n, rng_own)
        self.consumers.group = group_of
        member_mean = self._member_preference_mean(group_owner, owner_nodes.size)
        group_size = np.bincount(group_of[group_of >= 0], minlength=group_owner.size)
        self.owners = Owners(p.owners, owner_nodes, group_owner, group_size, member_mean, rng_own)
        self.is_owner = np.zeros(n, dtype=bool)
        self.is_owner[owner_nodes] = True
        self._members_at_start = self.owners.members()

        # The streamer and her followers.
        self.streamer = MegaStreamer(self, p.streamer)
        fans = world["followers"].permutation(n)[: int(round(p.streamer.follower_share * n))]
        self.consumers.follows[fans] = True

        # A channel switched off does not exist in this world (its agents were still drawn,
        # so the rest of the world is the same as with it on).
        if not p.channels.streamer:
            self.remove_streamer()  # (her displaced audience is reset below: she never had one)
        if not p.channels.owners:
            self.owners.active[:] = False

        self.orders = Orders(capacity=max(1024, n // 10))
        self.recorder = TickRecorder()
        self._reached = np.zeros((len(CHANNELS), n), dtype=bool)
        # Who was reached and who bought in the current 30-day window, per channel, and the
        # (buyers, reached) counts of each completed window (group conversion is monthly).
        self._month_reached = np.zeros((len(CHANNELS), n), dtype=bool)
        self._month_bought = np.zeros((len(CHANNELS), n), dtype=bool)
        self.monthly: list[np.ndarray] = []
        self._displaced = np.zeros(0, dtype=np.int64)  # a banned streamer's former followers
        self._pending = np.zeros(0, dtype=np.int64)
        self._first_order_today = 0
        self._candidates: list[dict[str, np.ndarray]] = []  # today's undecided purchases
        # The sellers in the order the schedule calls them; the order decides nothing (the
        # day's purchases are settled together in a random order), which a test checks.
        self.sellers = [
            (p.channels.owners, self.sell_through_owners),
            (p.channels.streamer, self.sell_through_streamer),
            (p.channels.conventional, self.sell_through_search),
        ]

        # Hype belongs to the selling format: a group post, a live session, a search listing
        # (indexed by the channel whose format it is).
        self._hype = np.array([p.hype.post, p.hype.live, p.hype.search])

    # ------------------------------------------------------------------------------------------
    # The schedule
    # ------------------------------------------------------------------------------------------
    def step(self) -> None:
        """One day, in the order of ODD section 3."""
        self.begin_day(self.steps - 1)
        self.apply_events()
        self.review_contracts()
        self.train_owners()
        for on, sell in self.sellers:
            if on:
                sell()
        self.settle()
        self.word_of_mouth()
        self.deliver()
        self.grow_network()
        self.churn_and_unfollow()
        self.record_state()

    def begin_day(self, day: int) -> None:
        """Open the day's books; refill budgets at the start of a month; new needs arrive."""
        self.day = day
        self.streams = {
            name: np.random.default_rng(
                np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, day))
            )
            for name, seq in self._process_seeds.items()
        }
        self.recorder.start()
        self._first_order_today = len(self.orders)
        if day > 0 and day % MONTH == 0:
            self.demand.new_month()
        self.demand.arrive(day, self.streams["market"])
        self.extra_searchers = np.zeros(0, dtype=np.int64)
        if self._displaced.size and day < self._displaced_until:
            # The audience of a banned streamer looks elsewhere (T8): each former follower
            # searches with an extra daily chance. Its own stream keeps everyone else's draws
            # paired with a run without the ban.
            rng = self.streams["migration"]
            extra = rng.random(self._displaced.size) < self.params.events.ban_migration
            self.extra_searchers = self._displaced[extra]

    # ------------------------------------------------------------------------------------------
    # Events (ODD 7.9)
    # ------------------------------------------------------------------------------------------
    def apply_events(self) -> None:
        e = self.params.events
        if e.streamer_removed_day is not None and self.day == e.streamer_removed_day:
            self.remove_streamer()
        if e.churn_wave_day is not None and self.day == e.churn_wave_day:
            self.owners.churn_wave(e.churn_wave_share, self.day, self.streams["events"])
        if e.defective_batch_day is not None:
            products = self.brands[e.defective_batch_brand].products
            on = e.defective_batch_day <= self.day < e.defective_batch_day + e.defective_batch_days
            self.catalogue.quality[products] = (
                e.defective_batch_quality if on else self.catalogue.base_quality[products]
            )

    def remove_streamer(self) -> None:
        """The streamer is banned: no more sessions, her links and following vanish. Her
        former followers are displaced demand for ``events.ban_migration_days`` days (see
        :meth:`begin_day`)."""
        self.streamer.active = False
        self._displaced = np.flatnonzero(self.consumers.follows)
        # The ban comes after today's market draw: the displaced look elsewhere from tomorrow,
        # for ban_migration_days days.
        self._displaced_until = self.day + 1 + self.params.events.ban_migration_days
        self.consumers.follows[:] = False

    # ------------------------------------------------------------------------------------------
    # Brands review their contracts (ODD 7.10)
    # ------------------------------------------------------------------------------------------
    def review_contracts(self) -> None:
        """Every ``brands.review_days`` days each brand leaves the channels that have lost it
        more than it accepts since the contract began; the streamer then signs new brands to
        fill her sessions; the channels' assortments change accordingly."""
        if self.day > 0 and self.day % self.params.brands.review_days == 0:
            left = self.accounts.review(self.day).any()
            signed = self.streamer.sign_brands(
                self.accounts,
                np.bincount(self.catalogue.brand, minlength=self.params.world.brands),
                self._streamer_eligible,
                self.streams["contracts"],
            )
            if left or signed:
                self._index_products()

    def _index_products(self) -> None:
        """What each channel may sell, from the brands' contracts."""
        allowed = {ch: self.accounts.products_allowed(self.catalogue.brand, ch) for ch in Channel}
        self._owner_index = self.catalogue.by_category(allowed[Channel.OWNERS])
        self._search_index = self.catalogue.by_category(allowed[Channel.CONVENTIONAL])
        self.streamer_products = allowed[Channel.STREAMER]

    # ------------------------------------------------------------------------------------------
    # Owners: 2b live, assortment and group posts (ODD 7.1, 7.2, 7.8)
    # ------------------------------------------------------------------------------------------
    def train_owners(self) -> None:
        own, pl = self.owners, self.params.platform
        own.forget()
        if own.m and self.platform.live_2b_today(self.day):
            attended = own.active & (self.streams["training"].random(own.m) < pl.live_2b_attendance)
            own.train(attended, pl.live_2b_skill_gain, self.day, pl.live_2b_material_days)

    def sell_through_owners(self) -> None:
        """Owners post today's picks; members open the posts (more often the more they trust
        her) and see every product posted; each owner hears out some of those who opened."""
        own, con = self.owners, self.consumers
        if own.m == 0:
            return
        rng = self.streams["owners"]
        products, start, count = own.pick_products(
            lambda cats: self.catalogue.pick_in_category(self._owner_index, cats, rng), rng
        )
        own.count_member_day()
        # An inactive or silent owner's group has nothing to open, nor has one whose picks found
        # no product (every brand of the category left the channel).
        stocked = np.bincount(np.repeat(np.arange(own.m), count)[products >= 0], minlength=own.m)
        members = np.flatnonzero(con.group >= 0)
        owner = own.group_owner[con.group[members]]
        posted = stocked[owner] > 0
        members, owner = members[posted], owner[posted]
        base = own.open_rate(self.day, self.params.platform.live_2b_material)[owner]
        opens = rng.random(members.size) < con.engagement(base, members, Source.OWNER)
        members, owner = members[opens], owner[opens]
        self.recorder.add("visits", Channel.OWNERS, members.size)
        self.owners_listen(members, owner)
        # Each member who opened sees every product her owner posted today.
        k = count[owner]
        consumer = np.repeat(members, k)
        owner = np.repeat(owner, k)
        offset = offsets(k)
        product = products[start[owner] + offset]
        ok = product >= 0
        h = self.params.hype
        on_material = own.material_until[owner[ok]] >= self.day
        hype = np.where(on_material, h.material, h.post)
        self.offer(consumer[ok], product[ok], Channel.OWNERS, Source.OWNER, owner[ok], hype)

    def owners_listen(self, openers: np.ndarray, owner: np.ndarray) -> None:
        """Each active owner hears out ``owners.listening`` of today's openers of her posts (in
        expectation; all of them when fewer opened): each heard member's taste teaches her."""
        if openers.size == 0:
            return
        opened = np.bincount(owner, minlength=self.owners.m)
        chance = np.minimum(1.0, self.params.owners.listening / np.maximum(opened[owner], 1))
        heard = self.streams["owners"].random(openers.size) < chance
        self.owners.listen(owner[heard], self.consumers.preference[openers[heard]])
        # Being heard out is an experience of its own: trust in her owner moves towards
        # feedback.heard_satisfaction (the long maintenance the article credits owners with).
        fb = self.params.feedback
        who = openers[heard]
        heard_value = np.full(who.size, fb.heard_satisfaction)
        self.consumers.update_trust(who, Source.OWNER, heard_value, fb.trust_gain, fb.trust_loss)

    # ------------------------------------------------------------------------------------------
    # The streamer's session (ODD 7.1, 7.2)
    # ------------------------------------------------------------------------------------------
    def sell_through_streamer(self) -> None:
        s = self.streamer
        if not s.session_today(self.day):
            return
        lineup = s.build_lineup(self.catalogue, self.streamer_products, self.streams["streamer"])
        if lineup.size == 0:  # no brand left to put on air: no session
            return
        self.recorder.add("slots", Channel.STREAMER, lineup.size)
        self.recorder.add("vetted_slots", Channel.STREAMER, s.vetted.sum())
        fee = money.slot_fee(self.params.streamer, int(self.consumers.follows.sum()), lineup.size)
        self._charge("slot_fee", Channel.STREAMER, self.catalogue.brand[lineup], fee)
        self.recorder.add("seller_earnings", Channel.STREAMER, fee * lineup.size)
        con, rng = self.consumers, self.streams["streamer"]
        fans = np.flatnonzero(con.follows)
        watch = con.engagement(self.params.streamer.attention_rate, fans, Source.STREAMER)
        viewers = fans[rng.random(fans.size) < watch]
        self.recorder.add("visits", Channel.STREAMER, viewers.size)
        consumer, product = s.products_watched(viewers, rng)
        self.offer(consumer, product, Channel.STREAMER, Source.STREAMER)
        # The platform pushes the live room beyond her audience: some who see it follow.
        new = rng.integers(0, self.n, rng.poisson(self.params.streamer.discovery * viewers.size))
        self._follow(new)

    # ------------------------------------------------------------------------------------------
    # Conventional e-commerce: search and ads (ODD 7.2)
    # ------------------------------------------------------------------------------------------
    def sell_through_search(self) -> None:
        """Consumers with an open need search for it (a banned streamer's former followers
        more often); each search shows ``search_results`` products of the category."""
        c, d, rng = self.params.conventional, self.demand, self.streams["search"]
        k = c.search_results
        searching = (rng.random(self.n) < c.search_rate) & d.has_need(self.day)
        searching[self.extra_searchers] = True
        searchers = np.flatnonzero(searching)
        category = d.open_category(searchers, self.day, rng)
        none = category < 0  # a displaced follower with no open need browses her tastes
        category[none] = d.draw_category(searchers[none], rng)
        consumer = np.repeat(searchers, k)
        category = np.repeat(category, k)
        product = self.catalogue.pick_in_category(self._search_index, category, rng)
        ok = product >= 0
        consumer, product = consumer[ok], product[ok]
        # A search that found nothing stocked (every brand of the category left) is no visit.
        self.recorder.add("visits", Channel.CONVENTIONAL, np.unique(consumer).size)
        ad_cost = self.params.conventional.ad_cost
        self._charge("ads", Channel.CONVENTIONAL, self.catalogue.brand[product], ad_cost)
        self.offer(consumer, product, Channel.CONVENTIONAL, Source.SEARCH)

    # ------------------------------------------------------------------------------------------
    # Exposure and purchase: the one door every channel goes through (ODD 7.2, 7.3)
    # ------------------------------------------------------------------------------------------
    def offer(
        self,
        consumer: np.ndarray,
        product: np.ndarray,
        channel: np.ndarray | int,
        source: int,
        owner: np.ndarray | None = None,
        hype: np.ndarray | None = None,
    ) -> dict[str, np.ndarray] | None:
        """Show products to consumers: record reach and exposures, and draw each exposure's
        purchase against today's needs. ``hype`` is per exposure when its format varies within
        the channel (an owner's post on 2b material); by default the channel's format's. The
        draws that could become orders (candidates) wait for :meth:`settle`, which decides the
        day's purchases of every channel together.

        Every random number comes from the channel's own stream (word of mouth: its own), so
        a channel's draws do not depend on when the schedule calls it. Returns the batch of
        candidates (``None`` if there are none).
        """
        size = consumer.size
        if size == 0:
            return None
        channel_in = channel
        channel = np.broadcast_to(np.asarray(channel, dtype=np.int8), (size,))
        p, con, cat, rec = self.params, self.consumers, self.catalogue, self.recorder
        rec.add("exposures", channel)
        if source == Source.FRIEND:
            rec.add("wom_exposures", channel)
        if np.ndim(channel_in) == 0:
            self._reached[int(channel_in), consumer] = True
            self._month_reached[int(channel_in), consumer] = True
        else:
            self._reached[channel, consumer] = True
            self._month_reached[channel, consumer] = True

        hype = self._hype[channel] if hype is None else hype
        if source == Source.FRIEND:
            hype = hype * p.word_of_mouth.hype_carryover
        category = cat.category[product]
        fit = con.fit[consumer, category]
        rec.add_fit(channel, fit)
        paid = self.terms.paid(cat.list_price[product], channel)
        need_open = self.demand.is_open(consumer, category, self.day)

        def probability(i: np.ndarray | slice, need: np.ndarray | float) -> np.ndarray:
            c = consumer[i]
            return funnel.purchase_probability(
                p.purchase,
                fit[i],
                con.trust[source, c],
                hype[i],
                con.impulsiveness[c],
                paid[i] / cat.median_price,
                con.price_sensitivity[c],
                need,
            )

        own = _CHANNEL_STREAM[Channel(int(channel[0]))]
        rng = self.streams["wom" if source == Source.FRIEND else own]
        u = rng.random(size)
        cand = np.flatnonzero(u < probability(slice(None), need_open))
        k = cand.size
        if k == 0:
            return None
        # A candidate is sure to buy if its draw is also below the chance without the need.
        sure = ~need_open[cand] | (u[cand] < probability(cand, 0.0))
        fate = rng.random((4, k), dtype=np.float32)
        batch = {
            "position": cand,
            "consumer": consumer[cand],
            "product": product[cand],
            "category": category[cand],
            "channel": channel[cand],
            "source": np.full(k, source, dtype=np.int8),
            "owner": owner[cand] if owner is not None else np.full(k, -1, dtype=np.int32),
            "paid": paid[cand],
            "fit": fit[cand],
            "hype": hype[cand],
            "need_open": need_open[cand],
            "sure": sure,
            "key": fate[0],
            "u_defect": fate[1],
            "u_resolve": fate[2],
            "u_return": fate[3],
            "z_fit": rng.standard_normal(k, dtype=np.float32),
            "lag": rng.integers(p.delivery.lag_min, p.delivery.lag_max + 1, k),
        }
        self._candidates.append(batch)
        return batch

    def settle(self) -> None:
        """Decide the purchases offered so far today, all channels together.

        Candidates are met in the order of their own random keys, so no channel gets first
        pick by its place in the schedule; a purchase fills its need (a later candidate of the
        same need buys only if it would have without it) and spends her budget
        (:func:`sim.world.funnel.resolve_purchases`). Orders are written with their channel and
        source; each batch gets a ``bought`` mask over its candidates.
        """
        batches, self._candidates = self._candidates, []
        if not batches:
            return
        c = {key: np.concatenate([b[key] for b in batches]) for key in batches[0]}
        d = self.demand
        bought = funnel.resolve_purchases(
            c["consumer"],
            c["category"],
            c["key"],
            c["sure"],
            c["need_open"],
            c["paid"],
            d.left(c["consumer"]),
        )
        split = np.cumsum([b["consumer"].size for b in batches])[:-1]
        for batch, mask in zip(batches, np.split(bought, split), strict=True):
            batch["bought"] = mask
        if not bought.any():
            return
        # Written in channel order, whichever order the schedule offered them in, so the
        # order book (and what reads it in row order) does not depend on the schedule.
        rows_in = np.flatnonzero(bought)
        rows_in = rows_in[np.argsort(c["channel"][rows_in], kind="stable")]
        b = {key: value[rows_in] for key, value in c.items()}
        who, p, con = b["consumer"], self.params, self.consumers
        d.fill(who, b["category"])
        d.spend(who, b["paid"])
        self._month_bought[b["channel"], who] = True
        product = b["product"]
        rows = self.orders.append(
            day=self.day,
            consumer=who,
            product=product,
            brand=self.catalogue.brand[product],
            channel=b["channel"],
            source=b["source"],
            owner=b["owner"],
            list_price=self.catalogue.list_price[product],
            paid=b["paid"],
            fit=b["fit"],
            expected=funnel.expected_fit(p.purchase, b["fit"], b["hype"]),
            impulse=b["hype"] * con.impulsiveness[who],
            delivery_day=self.day + b["lag"],
            status=PENDING,
            u_defect=b["u_defect"],
            z_fit=b["z_fit"],
            u_resolve=b["u_resolve"],
            u_return=b["u_return"],
        )
        self._pending = np.concatenate([self._pending, rows])
        self._book_orders(rows, sign=+1.0)
        # A non-follower who bought a streamer product a friend forwarded may follow her.
        fans = who[(b["channel"] == Channel.STREAMER) & ~con.follows[who]]
        follow = self.streams["follow"].random(fans.size) < p.streamer.follow_on_purchase
        self._follow(fans[follow])

    def expose(
        self,
        consumer: np.ndarray,
        product: np.ndarray,
        channel: np.ndarray | int,
        source: int,
        owner: np.ndarray | None = None,
    ) -> np.ndarray:
        """Offer and settle at once (word of mouth, generation by generation). Returns a mask
        over the exposures: which became orders."""
        self.settle()
        batch = self.offer(consumer, product, channel, source, owner)
        bought = np.zeros(consumer.size, dtype=bool)
        if batch is not None:
            self.settle()
            bought[batch["position"][batch["bought"]]] = True
        return bought

    def _follow(self, who: np.ndarray) -> None:
        """Consumers start following the streamer (not a banned one)."""
        if self.streamer.active and who.size:
            new = who[~self.consumers.follows[who]]
            self.consumers.follows[new] = True
            self.recorder.add("new_followers", Channel.STREAMER, np.unique(new).size)

    def _book_orders(self, rows: np.ndarray, sign: float) -> None:
        """Order-time accounts (sign +1), or their reversal when the orders are returned (-1)."""
        o, cat, rec = self.orders, self.catalogue, self.recorder
        ch = o["channel"][rows].astype(np.int64)
        paid = o["paid"][rows]
        sale = self.terms.sale(paid, cat.cost[o["product"][rows]], ch)
        commission = sale["commission"]
        if sign > 0:
            rec.add("orders", ch)
            wom = o["source"][rows] == Source.FRIEND
            rec.add("wom_orders", ch[wom])
            rec.add("gmv", ch, paid)
            rec.add("wom_gmv", ch[wom], paid[wom])
        rec.add("discount", ch, sign * (o["list_price"][rows] - paid))
        rec.add("commission", ch, sign * commission)
        rec.add("platform_take", ch, sign * sale["take"])
        rec.add("seller_earnings", ch, sign * commission)
        rec.add("brand_profit", ch, sign * sale["profit"])
        self.accounts.book(o["brand"][rows], ch, sign * sale["profit"], sales=sign * paid)
        via_owner = ch == Channel.OWNERS
        if via_owner.any() and self.owners.m:
            owner = o["owner"][rows][via_owner]
            m = self.owners.m
            self.owners.earned_today += np.bincount(
                owner, weights=sign * commission[via_owner], minlength=m
            )
            self.owners.sales += np.bincount(owner, weights=sign * paid[via_owner], minlength=m)

    def _charge(
        self, kind: str, channel: np.ndarray | int, brand: np.ndarray, amount: np.ndarray | float
    ) -> None:
        """A brand cost of one kind (slot fee, ads, reverse logistics, write-off, exchanges):
        recorded by channel and booked to each brand's account in the channel."""
        amount = np.broadcast_to(np.asarray(amount, dtype=np.float64), brand.shape)
        self.recorder.add(kind, channel, amount)
        self.recorder.add("brand_profit", channel, -amount)
        self.accounts.book(brand, channel, -amount)

    # ------------------------------------------------------------------------------------------
    # Word of mouth (ODD 7.2, forwarding)
    # ------------------------------------------------------------------------------------------
    def word_of_mouth(self) -> None:
        """Buyers and satisfied customers forward products; the cascade runs within the day.

        Seeds: today's buyers, each forwarding one of today's orders with chance
        ``forward_rate``, and advocates, satisfied customers recommending their last kept
        purchase with daily chance ``advocacy_rate``. A friend reached is exposed once a day;
        if she buys she forwards with chance ``forward_rate``, and so on (Independent Cascade).
        """
        w, con, o = self.params.word_of_mouth, self.consumers, self.orders
        today = np.arange(self._first_order_today, len(o))
        today = today[self.streams["wom"].permutation(today.size)]
        _, first = np.unique(o["consumer"][today], return_index=True)
        today = today[first]
        buyers_forward = today[self.streams["wom"].random(today.size) < w.forward_rate]
        last = con.last_kept_order
        advocates = np.flatnonzero(last >= 0)
        happy = o["satisfaction"][last[advocates]] >= w.advocacy_threshold
        advocates = advocates[
            happy & (self.streams["wom"].random(advocates.size) < w.advocacy_rate)
        ]
        seed_rows = np.concatenate([buyers_forward, last[advocates]])
        seed_nodes = np.concatenate([o["consumer"][buyers_forward], advocates])
        # One forward per sender per day; links of a removed streamer or a quit owner are dead.
        _, first = np.unique(seed_nodes, return_index=True)
        seed_rows, seed_nodes = seed_rows[first], seed_nodes[first]
        live = self._channel_open(
            o["channel"][seed_rows], o["owner"][seed_rows], o["product"][seed_rows]
        )
        seed_rows, seed_nodes = seed_rows[live], seed_nodes[live]
        if seed_nodes.size == 0:
            return
        edge_prob = w.edge_prob * con.trust[Source.FRIEND] if w.trust_weighted else w.edge_prob
        payload = {"row": seed_rows}

        def activate(receiver: np.ndarray, sender_pos: np.ndarray) -> np.ndarray:
            rows = payload["row"][sender_pos]
            channel = o["channel"][rows]
            bought = self.expose(
                receiver, o["product"][rows], channel, Source.FRIEND, o["owner"][rows]
            )
            forwards = bought & (self.streams["wom"].random(receiver.size) < w.forward_rate)
            # The new forwarders pass on the product they were sent (same row: same product,
            # channel and owner link).
            payload["row"] = rows[forwards]
            return forwards

        independent_cascade(
            self.graph,
            seed_nodes,
            edge_prob,
            self.streams["wom"],
            self.n,
            activate=activate,
            max_generations=w.max_generations,
        )

    def _channel_open(
        self, channel: np.ndarray, owner: np.ndarray, product: np.ndarray
    ) -> np.ndarray:
        """Can a sale of this product still go through this channel (and this owner's link)
        today? Not if the channel is off or banned, the owner quit, or the product's brand has
        left the channel."""
        ok = self.accounts.contracts[self.catalogue.brand[product], channel.astype(np.int64)]
        ch = self.params.channels
        ok &= (channel != Channel.OWNERS) | ch.owners
        ok &= (channel != Channel.CONVENTIONAL) | ch.conventional
        ok &= (channel != Channel.STREAMER) | self.streamer.active
        via_owner = channel == Channel.OWNERS
        if via_owner.any():
            ok[via_owner] &= self.owners.active[owner[via_owner]]
        return ok

    # ------------------------------------------------------------------------------------------
    # Delivery, return and feedback (ODD 7.4-7.6)
    # ------------------------------------------------------------------------------------------
    def deliver(self) -> None:
        """Deliver today's orders: draw defects and fit, decide returns, update trust and
        learning, and book returns."""
        p, o, cat, con, rec = (
            self.params,
            self.orders,
            self.catalogue,
            self.consumers,
            self.recorder,
        )
        due_mask = o["delivery_day"][self._pending] <= self.day
        rows = self._pending[due_mask]
        self._pending = self._pending[~due_mask]
        if rows.size == 0:
            return
        product, channel = o["product"][rows], o["channel"][rows].astype(np.int64)
        owner, consumer = o["owner"][rows], o["consumer"][rows]
        category = cat.category[product]
        via_owner = channel == Channel.OWNERS
        # An owner who has quit no longer advises or serves: her orders still in transit get
        # the platform's service only.
        owner_skill = np.zeros(rows.size)
        if via_owner.any():
            mine = owner[via_owner]
            owner_skill[via_owner] = np.where(
                self.owners.active[mine], self.owners.skill[mine], 0.0
            )
        noise_scale = np.where(cat.apparel_category[category], p.delivery.apparel_fit_noise, 1.0)
        advised = via_owner & (o["source"][rows] == Source.OWNER)
        noise_scale = noise_scale * np.where(advised, 1.0 - p.owners.advice * owner_skill, 1.0)
        defect, realised = funnel.realise_delivery(
            p.delivery,
            cat.quality[product],
            o["fit"][rows],
            noise_scale,
            o["u_defect"][rows],
            o["z_fit"][rows],
        )
        misfit = realised < p.returns.misfit_threshold
        gap = funnel.expectation_gap(o["expected"][rows], realised, defect)
        problem = defect | misfit
        resolution = self.desks.resolution(
            problem, via_owner, owner, owner_skill, self.owners.m, o["brand"][rows]
        )
        resolved = problem & (o["u_resolve"][rows] < resolution)
        propensity = funnel.return_propensity(p.returns, defect, misfit, gap, o["impulse"][rows])
        returned = ~resolved & (o["u_return"][rows] < propensity)
        sat = funnel.satisfaction(
            returned, resolved, problem, gap, p.feedback.resolved_satisfaction
        )

        o["status"][rows] = np.where(returned, RETURNED, KEPT)
        o["defect"][rows], o["misfit"][rows], o["resolved"][rows] = defect, misfit, resolved
        o["satisfaction"][rows] = sat
        con.update_after_delivery(
            consumer,
            o["source"][rows].astype(np.int64),
            sat,
            p.feedback.trust_gain,
            p.feedback.trust_loss,
        )
        kept_rows = rows[~returned]
        con.last_kept_order[o["consumer"][kept_rows]] = kept_rows
        self.owners.learn(owner[advised], category[advised], ~returned[advised])

        rec.add("delivered", channel)
        rec.add("defects", channel[defect])
        rec.add("problems", channel[problem])
        rec.add("resolved", channel[resolved])
        if resolved.any():
            brand = o["brand"][rows][resolved]
            cost = p.brands.exchange_cost + np.where(
                defect[resolved], cat.cost[product[resolved]], 0.0
            )
            self._charge("exchanges", channel[resolved], brand, cost)
        sat_sum = np.bincount(channel, weights=sat, minlength=len(CHANNELS))
        sat_n = np.bincount(channel, minlength=len(CHANNELS))
        with np.errstate(invalid="ignore", divide="ignore"):
            rec.set(
                "satisfaction",
                np.r_[np.where(sat_n > 0, sat_sum / sat_n, np.nan), sat.mean()],
            )
        r = rows[returned]
        if r.size:
            rch = channel[returned]
            paid = o["paid"][r]
            rec.add("returns", rch)
            rec.add("returned_value", rch, paid)
            brand = o["brand"][r]
            self._charge("reverse_logistics", rch, brand, p.brands.reverse_logistics)
            write_off = np.where(defect[returned], cat.cost[o["product"][r]], 0.0)
            self._charge("write_off", rch, brand, write_off)
            self._book_orders(r, sign=-1.0)
            # The need is open again (for any channel), and the money goes back to her budget
            # if it was spent in the current month's budget.
            buyer = consumer[returned]
            self.demand.reopen(buyer, category[returned], self.day)
            this_month = o["day"][r] // MONTH == self.day // MONTH
            self.demand.refund(buyer[this_month], paid[this_month])

    # ------------------------------------------------------------------------------------------
    # Growth: groups grow by invitation, members become owners (ODD 7.11)
    # ------------------------------------------------------------------------------------------
    def grow_network(self) -> None:
        """Members invite friends to their group (more often the more they trust their owner),
        owners invite friends to their emptiest group, and satisfied members are recruited as
        new owners (the platform's referral model).

        A friend joins if she is not an owner and in no active owner's group (members of an
        owner who quit are free again), the group is below ``owners.group_size_max``, and a
        draw against her trust in friends says yes; her trust in the new owner starts at the
        initial mean. A recruit leaves her group and starts with empty groups of her own, which
        she and her new members fill by invitation.
        """
        own, con, p = self.owners, self.consumers, self.params.owners
        if not self.params.channels.owners or own.m == 0:
            return
        rng = self.streams["growth"]
        in_group = np.flatnonzero(con.group >= 0)
        group = con.group[in_group]
        owner = own.group_owner[group]
        trust = con.trust[Source.OWNER, in_group]
        live = own.active[owner]
        # Each active owner (and each group of an owner who quit) has one satisfied member in
        # view, at random, and recruits her with daily chance recruit_rate: recruitment grows
        # with the number of owners, not with the size of their groups.
        eligible = trust >= p.recruit_trust
        unit = np.where(live, owner, own.m + group)[eligible]
        pool = in_group[eligible]
        by_unit = np.lexsort((rng.random(pool.size), unit))
        in_view = pool[by_unit][run_starts(unit[by_unit])]
        recruits = in_view[rng.random(in_view.size) < p.recruit_rate]
        members, group = in_group[live], group[live]
        invites = rng.random(members.size) < p.invite_rate * trust[live]
        active = np.flatnonzero(own.active)
        by_owner = np.repeat(active, rng.poisson(p.owner_invites, active.size))
        inviter = np.r_[members[invites], own.node[by_owner]]
        target = np.r_[group[invites], own.emptiest_group(by_owner)]
        friend = random_neighbour(self.graph, inviter, self.n, rng)
        accept = rng.random(friend.size) < con.trust[Source.FRIEND, np.maximum(friend, 0)]
        self._recruit(recruits, rng)
        ok = accept & (friend >= 0)
        ok[ok] &= ~self.is_owner[friend[ok]] & ~self._in_active_group(friend[ok])
        friend, target = friend[ok], target[ok]
        _, first = np.unique(friend, return_index=True)  # one group per friend a day
        friend, target = friend[first], target[first]
        order = np.argsort(target, kind="stable")
        friend, target = friend[order], target[order]
        room = p.group_size_max - own.group_size[target]
        join = own.active[own.group_owner[target]] & (rank_in_run(target) < room)
        self._move_to_group(friend[join], target[join])
        self.recorder.add("joined_members", Channel.OWNERS, int(join.sum()))

    def _recruit(self, recruits: np.ndarray, rng: np.random.Generator) -> None:
        """Satisfied members become owners: a member of an active owner leaves her group and
        starts empty groups of her own; a member of a quit owner's group takes it over (at most
        one recruit per such group: see :meth:`grow_network`), and its members' trust in their
        new owner starts at the initial mean, as for anyone joining a group."""
        if recruits.size == 0:
            return
        own, con, p = self.owners, self.consumers, self.params.owners
        group = con.group[recruits]
        orphan = ~own.active[own.group_owner[group]]
        heirs, heir_group, starters = recruits[orphan], group[orphan], recruits[~orphan]
        self._move_to_group(recruits, np.full(recruits.size, -1))
        groups = 1 + rng.binomial(3, (p.groups_mean - 1.0) / 3.0, starters.size)
        own.add(starters, groups, con.preference[starters].astype(np.float64), self.day)
        own.take_over(heirs, heir_group, con.preference[heirs].astype(np.float64), self.day)
        inherited = np.isin(con.group, heir_group)
        con.trust[Source.OWNER, inherited] = con.initial_trust[Source.OWNER]
        new = np.r_[starters, heirs]
        self.is_owner[new] = True
        self.recorder.add("recruited_owners", Channel.OWNERS, new.size)

    def _in_active_group(self, who: np.ndarray) -> np.ndarray:
        g = self.consumers.group[who]
        return (g >= 0) & self.owners.active[self.owners.group_owner[np.maximum(g, 0)]]

    def _move_to_group(self, who: np.ndarray, group: np.ndarray) -> None:
        """Consumers leave their group (if any) for ``group`` (-1: none)."""
        con, own = self.consumers, self.owners
        old = con.group[who]
        np.subtract.at(own.group_size, old[old >= 0], 1)
        np.add.at(own.group_size, group[group >= 0], 1)
        con.group[who] = group
        joined = group >= 0
        con.trust[Source.OWNER, who[joined]] = con.initial_trust[Source.OWNER]

    # ------------------------------------------------------------------------------------------
    # Churn and unfollowing (ODD 7.7)
    # ------------------------------------------------------------------------------------------
    def churn_and_unfollow(self) -> None:
        con, own = self.consumers, self.owners
        if own.m:
            own.book_earnings(self.day)
            quit = own.churn(self.day, self.streams["churn"])
            self.recorder.add("quit_owners", Channel.OWNERS, quit.size)
            members = np.flatnonzero(con.group >= 0)
            unhappy = con.trust[Source.OWNER, members] < self.params.owners.leave_threshold
            leave = unhappy & (
                self.streams["leave"].random(members.size) < self.params.owners.leave_rate
            )
            self._move_to_group(members[leave], np.full(int(leave.sum()), -1))
        fans = np.flatnonzero(con.follows)
        unhappy = con.trust[Source.STREAMER, fans] < self.params.streamer.unfollow_threshold
        con.follows[
            fans[
                unhappy
                & (self.streams["unfollow"].random(fans.size) < self.params.streamer.unfollow_rate)
            ]
        ] = False

    # ------------------------------------------------------------------------------------------
    # Recording (ODD 7.10)
    # ------------------------------------------------------------------------------------------
    def record_state(self) -> None:
        rec, con, o = self.recorder, self.consumers, self.orders
        reach = self._reached.sum(axis=1)
        rec.set("reach", np.r_[reach, self._reached.any(axis=0).sum()])
        today = np.arange(self._first_order_today, len(o))
        ch = o["channel"][today]
        who = o["consumer"][today]
        buyers = [np.unique(who[ch == c]).size for c in range(len(CHANNELS))]
        rec.set("buyers", np.r_[buyers, np.unique(who).size])
        in_group = con.group >= 0
        if self.owners.m:
            in_group &= self.owners.active[self.owners.group_owner[np.maximum(con.group, 0)]]
        rec.set(
            "trust",
            [
                _mean(con.trust[Source.OWNER][in_group]),
                _mean(con.trust[Source.STREAMER][con.follows]),
                _mean(con.trust[Source.SEARCH]),
                _mean(con.trust[Source.FRIEND]),
            ],
        )
        active = float(self.owners.active.sum())
        fans = float(con.follows.sum())
        members = float(self.owners.members() @ self.owners.active)
        rec.set("active_owners", [active, np.nan, np.nan, active])
        rec.set("members", [members, np.nan, np.nan, members])
        rec.set("followers", [np.nan, fans, np.nan, fans])
        rec.set("brands", self.accounts.in_channel())
        rec.finish()
        if (self.day + 1) % MONTH == 0:
            self.monthly.append(self._month_counts())
            self._month_reached[:] = False
            self._month_bought[:] = False

    def _month_counts(self) -> np.ndarray:
        """(buyers, reached) in the current window: rows channels then all."""
        bought, reached = self._month_bought, self._month_reached
        return np.array(
            [
                [*bought.sum(axis=1), bought.any(axis=0).sum()],
                [*reached.sum(axis=1), reached.any(axis=0).sum()],
            ]
        )

    def monthly_windows(self) -> np.ndarray:
        """Completed 30-day windows as an array (window, buyers/reached, column); a run
        shorter than a month gives its one partial window."""
        return np.array(self.monthly) if self.monthly else self._month_counts()[None]

    # ------------------------------------------------------------------------------------------
    def _member_preference_mean(self, group_owner: np.ndarray, m: int) -> np.ndarray:
        """Each owner's members' mean category preference (what she could learn at best)."""
        con = self.consumers
        c = con.preference.shape[1]
        members = np.flatnonzero(con.group >= 0)
        if m == 0:
            return np.zeros((0, c))
        owner = group_owner[con.group[members]]
        total = np.zeros((m, c))
        np.add.at(total, owner, con.preference[members])
        count = np.bincount(owner, minlength=m)[:, None]
        return np.where(count > 0, total / np.maximum(count, 1), 1.0 / c)

    # ------------------------------------------------------------------------------------------
    def timeseries(self) -> pd.DataFrame:
        """Per-tick metrics: one row per (day, channel)."""
        return self.recorder.frame()

    def consumer_states(self) -> np.ndarray:
        """Each consumer's state now, as an index into :data:`CONSUMER_STATES`: returned an
        order, else bought, else exposed (owners first, then streamer, then search), else
        unreached. For drawings of the network."""
        state = np.zeros(self.n, dtype=np.int8)
        for code, channel in (
            (3, Channel.CONVENTIONAL),
            (2, Channel.STREAMER),
            (1, Channel.OWNERS),
        ):
            state[self._reached[channel]] = code
        o = self.orders
        state[o["consumer"]] = 4
        state[o["consumer"][o["status"] == RETURNED]] = 5
        return state

    def owner_table(self) -> pd.DataFrame:
        """One row per owner: when she joined and quit (-1: still active), her groups, members
        at the start (0 for a recruit), at the end and on average, skill, earnings, sales."""
        own = self.owners
        days = max(self.day + 1, 1)
        return pd.DataFrame(
            {
                "owner": np.arange(own.m),
                "consumer": own.node,
                "joined_day": own.joined_day,
                "quit_day": own.quit_day,
                "groups": own.groups,
                "members_start": np.r_[
                    self._members_at_start, np.zeros(own.m - self._members_at_start.size, int)
                ],
                "members_end": own.members(),
                "members_mean": own.member_days / np.maximum(days - own.joined_day, 1),
                "skill": own.skill,
                "earnings": own.earnings,
                "sales": own.sales,
                "active": own.active,
            }
        )

    def summary(self) -> pd.DataFrame:
        """Run summary: one row per (channel, metric)."""
        summary = summarise(
            self.recorder, self.orders, self.n, self.owners.earnings, self.catalogue.apparel
        )
        return pd.concat([summary, self._pattern_metrics()], ignore_index=True)

    def _pattern_metrics(self) -> pd.DataFrame:
        """Monthly group conversion (T5) and owners' monthly sales per member (T7)."""
        windows = self.monthly_windows()
        buyers, reached = windows[:, 0].sum(axis=0), windows[:, 1].sum(axis=0)
        rows = [
            (name, "monthly_buyer_conversion", float(b / r) if r else float("nan"))
            for name, b, r in zip([*CHANNELS, "all"], buyers, reached, strict=True)
        ]
        member_months = self.owners.member_days / MONTH
        has = member_months > 0
        if not self.params.channels.owners:
            has[:] = False  # no owner network: nothing to measure (NaN, as other owner metrics)
        per_member = self.owners.sales[has] / member_months[has]
        for q, label in ((0.5, "median"), (0.99, "p99")):
            value = float(np.quantile(per_member, q)) if per_member.size else float("nan")
            for name in (CHANNELS[Channel.OWNERS], "all"):
                rows.append((name, f"owner_sales_per_member_month_{label}", value))
        return pd.DataFrame(rows, columns=["channel", "metric", "value"])


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


@dataclass
class RunResult:
    """What one run returns: its tables, the order book, the catalogue, the owners, timings."""

    params: Params
    summary: pd.DataFrame
    timeseries: pd.DataFrame
    orders: pd.DataFrame
    products: pd.DataFrame
    owners: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    def table(self, metrics: tuple[str, ...] = ("reach", "conversion", "return_rate")):
        """Channels side by side: one row per metric, one column per channel."""
        s = self.summary[self.summary["metric"].isin(metrics)]
        return s.pivot(index="metric", columns="channel", values="value").reindex(
            index=list(metrics), columns=[*CHANNELS, "all"]
        )


def run(params: Params | None = None, progress=None) -> RunResult:
    """Build a model, run it for ``params.world.days`` days and return its results.

    ``progress``, if given, is called as ``progress(day, days)`` after each day.
    """
    params = params if params is not None else Params()
    t0 = time.perf_counter()
    model = CommerceModel(params)
    t1 = time.perf_counter()
    days = params.world.days
    for d in range(days):
        model.step()
        if progress is not None:
            progress(d + 1, days)
    t2 = time.perf_counter()
    result = RunResult(
        params=params,
        summary=model.summary(),
        timeseries=model.timeseries(),
        orders=model.orders.to_frame(),
        products=model.catalogue.to_frame(),
        owners=model.owner_table(),
    )
    t3 = time.perf_counter()
    result.timings = {
        "build_s": t1 - t0,
        "simulate_s": t2 - t1,
        "collect_s": t3 - t2,
        "per_tick_ms": 1000 * (t2 - t1) / days,
    }
    return result
