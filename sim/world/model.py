"""The model: brands, owners, consumers, a mega-streamer and the platform on one social graph.

:class:`CommerceModel` is a :class:`mesa.Model`: its ``__init__`` builds the world (ODD 5) and
its :meth:`~CommerceModel.step` is the daily schedule of docs/ODD.md (section 3)::

    needs arrive -> events -> 2b live training -> owners post (and listen) -> streamer session
    -> search -> the day's purchases, all channels together -> word of mouth
    -> deliveries and returns -> groups grow, owners recruited -> churn and unfollowing -> record

Each submodel (ODD 7) is a function in the module of its domain: :mod:`~sim.world.events`,
:mod:`~sim.world.money` (contract reviews), :mod:`~sim.world.owners` (2b live, posts),
:mod:`~sim.world.streamer` (sessions), :mod:`~sim.world.search`, :mod:`~sim.world.purchases`
(every exposure passes through its ``offer``; ``settle`` decides the day's purchases of all
channels together, in a random order no channel controls, against shared needs and budgets),
:mod:`~sim.world.cascade` (word of mouth), :mod:`~sim.world.delivery` (every delivery),
:mod:`~sim.world.growth` (invitations, recruitment, churn, unfollowing) and
:mod:`~sim.world.recorder` (the day's records, the output tables). Consumers and owners are
arrays and the graph is a CSR adjacency, so a tick is array work; brands, the streamer and the
platform are Mesa agents.

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

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mesa
import numpy as np
import pandas as pd

from sim.world import pieces, recorder
from sim.world.allocator import reuse_freed_memory
from sim.world.brands import Brand, Catalogue
from sim.world.cascade import word_of_mouth
from sim.world.channels import CHANNELS, Source
from sim.world.consumers import Consumers
from sim.world.delivery import deliver
from sim.world.demand import MONTH
from sim.world.events import apply_events, displaced_searchers, remove_streamer
from sim.world.graph import build_graph
from sim.world.growth import churn_and_unfollow, grow_network
from sim.world.metrics import TickRecorder
from sim.world.money import BrandAccounts, Terms, assortments, first_contracts, review_contracts
from sim.world.orders import Orders
from sim.world.owners import first_owners, place_owners, sell_through_owners, train_owners
from sim.world.params import ParameterError, Params
from sim.world.platform import Platform
from sim.world.purchases import expose, settle
from sim.world.recorder import CONSUMER_STATES
from sim.world.search import sell_through_search
from sim.world.service import ServiceDesks
from sim.world.streamer import MegaStreamer, sell_through_streamer

__all__ = ["CONSUMER_STATES", "PROCESS_STREAMS", "CommerceModel", "RunResult", "run"]

# Child streams of the run's SeedSequence, one per part of the world and one for the dynamics.
_STREAMS = ("graph", "consumers", "catalogue", "owners", "followers", "dynamics")
# The dynamics stream is split again, one stream per process, so a lever that changes one
# channel's draws leaves the other channels' draws where they were (common random numbers).
PROCESS_STREAMS: tuple[str, ...] = tuple(
    "market events training owners streamer search wom churn leave unfollow migration growth "
    "follow contracts".split()
)


class _Beside:
    """``fn(*args)`` run on a thread of its own when a core is spare (:mod:`sim.world.pieces`),
    else at once; :meth:`result` waits for it and returns what it returned (or raises what it
    raised). Leaving its ``with`` block on an error waits for it too, except on an interrupt."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self._outcome: tuple[bool, Any] | None = None
        self._thread: threading.Thread | None = None
        if pieces.spare_core():
            self._thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
            self._thread.start()
        else:
            self._run(fn, args)

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self._outcome = (True, fn(*args))
        except BaseException as error:  # (handed to whoever waits, as a future would)
            self._outcome = (False, error)

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> _Beside:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: Any) -> None:
        # A failed build leaves no thread behind drawing GBs of consumers (an interrupt does
        # not wait for it: the thread is a daemon).
        if kind is not None and not issubclass(kind, KeyboardInterrupt):
            self.wait()

    def result(self) -> Any:
        self.wait()
        assert self._outcome is not None
        done, value = self._outcome
        if not done:
            raise value
        return value


class CommerceModel(mesa.Model):
    """One simulated world. Configure with a :class:`~sim.world.params.Params`; call
    :meth:`step`. Its attributes are the state the submodels share (ODD 2, "The world")."""

    def __init__(self, params: Params | None = None) -> None:
        p = params if params is not None else Params()
        reuse_freed_memory()  # large worlds allocate GBs of temporaries a day (sim.world.allocator)
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
        # The consumers are drawn on a second thread (when a core is spare) while the catalogue
        # is made and the owners take their places, which read only the graph: each uses a
        # stream of its own, so the world is the one drawn one after the other (at 10M
        # consumers, two cores save a quarter of the build).
        with _Beside(
            Consumers, p.consumers, n, p.world.categories, world["consumers"], self.graph
        ) as drawing:
            # Brands and their products; the platform's selection of the brands owners may sell;
            # the brands contracted with the streamer; every brand lists in search.
            rng_cat = world["catalogue"]
            self.catalogue = Catalogue(p.world, p.brands, rng_cat)
            brand_order = rng_cat.permutation(p.world.brands)
            self.brands = [
                Brand(self, b, np.flatnonzero(self.catalogue.brand == b))
                for b in range(p.world.brands)
            ]
            self.platform = Platform(self, p.platform)
            admitted = self.platform.select(self.catalogue, rng_cat)
            # A screened streamer signs only brands the platform admitted (a lever).
            self.streamer_eligible = admitted if p.streamer.screened else np.ones_like(admitted)
            eligible = brand_order[self.streamer_eligible[brand_order]]
            contracts = first_contracts(admitted, eligible, p)
            self.accounts = BrandAccounts(contracts, p.brands.loss_tolerance)
            self.terms = Terms.from_params(p)
            self.desks = ServiceDesks(p.after_sales, p.world.brands, n / 100_000)
            self.owner_index, self.search_index, self.streamer_products = assortments(
                self.accounts, self.catalogue
            )

            # Owners and their groups; the consumers, once drawn.
            w = p.word_of_mouth
            placed = place_owners(
                self.graph,
                p.owners,
                n,
                world["owners"],
                edge_prob=(lambda: w.edge_prob * drawing.result().trust[Source.FRIEND])
                if w.trust_weighted
                else w.edge_prob,
                community_size=p.graph.community_size,
            )
        self.consumers = drawing.result()
        self.demand = self.consumers.demand
        self.owners = first_owners(placed, self.consumers, p.owners, world["owners"])
        self.is_owner = np.zeros(n, dtype=bool)
        self.is_owner[self.owners.node] = True
        self.members_at_start = self.owners.members()

        # The streamer and her followers.
        self.streamer = MegaStreamer(self, p.streamer)
        fans = world["followers"].permutation(n)[: int(round(p.streamer.follower_share * n))]
        self.consumers.follows[fans] = True

        # A channel switched off does not exist in this world (its agents were still drawn,
        # so the rest of the world is the same as with it on).
        self.displaced_until = 0
        if not p.channels.streamer:
            remove_streamer(self)  # (her displaced audience is reset below: she never had one)
        if not p.channels.owners:
            self.owners.active[:] = False

        self.orders = Orders(capacity=max(1024, n // 10))
        self.recorder = TickRecorder()
        self.reached = np.zeros((len(CHANNELS), n), dtype=bool)
        # Who was reached and who bought in the current 30-day window, per channel, and the
        # (buyers, reached) counts of each completed window (group conversion is monthly).
        self.month_reached = np.zeros((len(CHANNELS), n), dtype=bool)
        self.month_bought = np.zeros((len(CHANNELS), n), dtype=bool)
        self.monthly: list[np.ndarray] = []
        self.displaced = np.zeros(0, dtype=np.int64)  # a banned streamer's former followers
        self.pending = np.zeros(0, dtype=np.int64)  # order rows not delivered yet
        self.first_order_today = 0  # the order book's first row of today
        self.candidates: list[dict[str, np.ndarray]] = []  # today's undecided purchases
        self.extra_searchers = np.zeros(0, dtype=np.int64)  # today's displaced searchers
        # The sellers in the order the schedule calls them; the order decides nothing (the
        # day's purchases are settled together in a random order), which a test checks.
        self.sellers = [
            (p.channels.owners, sell_through_owners),
            (p.channels.streamer, sell_through_streamer),
            (p.channels.conventional, sell_through_search),
        ]
        # Hype belongs to the selling format: a group post, a live session, a search listing
        # (indexed by the channel whose format it is).
        self.format_hype = np.array([p.hype.post, p.hype.live, p.hype.search])

    def step(self) -> None:
        """One day, in the order of ODD section 3."""
        self.begin_day(self.steps - 1)
        apply_events(self)
        review_contracts(self)
        live_2b = self.platform.live_2b_today(self.day)
        train_owners(self.owners, self.params.platform, live_2b, self.day, self.streams["training"])
        for on, sell in self.sellers:
            if on:
                sell(self)
        settle(self)
        word_of_mouth(self)
        deliver(self)
        grow_network(self)
        churn_and_unfollow(self)
        recorder.record_state(self)

    def begin_day(self, day: int) -> None:
        """Open the day: a fresh stream per process, the day's records; refill budgets at the
        start of a month; new needs arrive; a banned streamer's former followers look
        elsewhere (:func:`sim.world.events.displaced_searchers`)."""
        self.day = day
        self.streams = {
            name: np.random.default_rng(
                np.random.SeedSequence(seq.entropy, spawn_key=(*seq.spawn_key, day))
            )
            for name, seq in self._process_seeds.items()
        }
        self.recorder.start()
        self.first_order_today = len(self.orders)
        if day > 0 and day % MONTH == 0:
            self.demand.new_month()
        self.demand.arrive(day, self.streams["market"])
        self.extra_searchers = displaced_searchers(self)

    # Thin doors for callers outside the schedule (tests, verification, the view, run()).
    def expose(
        self,
        consumer: np.ndarray,
        product: np.ndarray,
        channel: np.ndarray | int,
        source: int,
        owner: np.ndarray | None = None,
    ) -> np.ndarray:
        """Offer and settle at once; which exposures became orders
        (:func:`sim.world.purchases.expose`)."""
        return expose(self, consumer, product, channel, source, owner)

    def word_of_mouth(self) -> None:
        """:func:`sim.world.cascade.word_of_mouth` on this world."""
        word_of_mouth(self)

    def timeseries(self) -> pd.DataFrame:
        """Per-tick metrics: one row per (day, channel)."""
        return self.recorder.frame()

    def summary(self) -> pd.DataFrame:
        """Run summary: one row per (channel, metric) (:func:`sim.world.recorder.summary`)."""
        return recorder.summary(self)

    def owner_table(self) -> pd.DataFrame:
        """One row per owner (:func:`sim.world.recorder.owner_table`)."""
        return recorder.owner_table(self)

    def consumer_states(self) -> np.ndarray:
        """Each consumer's state, an index into :data:`CONSUMER_STATES`
        (:func:`sim.world.recorder.consumer_states`)."""
        return recorder.consumer_states(self)

    @property
    def _displaced(self) -> np.ndarray:  # its former name, read by a test
        return self.displaced


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
