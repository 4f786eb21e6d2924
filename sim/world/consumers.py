"""Consumers: the population, held as arrays (one entry per consumer, i.e. per graph node).

State (ODD 2, "Consumer"): category preferences, price sensitivity, impulsiveness, trust in
each kind of source (her owner, the streamer, friends, search), satisfaction, the group she
belongs to, whether she follows the streamer, her last kept purchase (what she recommends as an
advocate), and her demand (open needs and monthly budget, :mod:`sim.world.demand`).

Behaviour that is a consumer's own lives here: how engaged she is with a source she trusts, and
how trust and satisfaction move after a delivery.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit

from sim.world.channels import Source
from sim.world.demand import Demand
from sim.world.distributions import beta_with_mean
from sim.world.funnel import sigmoid
from sim.world.graph import regions
from sim.world.params import ConsumerParams
from sim.world.ragged import rank_in_run


class Consumers:
    """The consumer population as arrays; ``n`` consumers, ``c`` categories."""

    def __init__(
        self,
        p: ConsumerParams,
        n: int,
        categories: int,
        rng: np.random.Generator,
        adj: sp.csr_array | None = None,
    ):
        self.n = n
        # One child stream per attribute: changing how one attribute is drawn (a parameter at a
        # bound, a Beta sampler that consumes a variable number of draws) leaves the others.
        taste, price, impulse, need, trust = rng.spawn(5)
        if adj is None:
            prefs = taste.dirichlet(np.full(categories, p.preference_concentration), n)
        else:
            prefs = self.draw_preferences(
                adj, categories, p.preference_concentration, p.homophily, p.taste_region_size, taste
            )
        self._set_preferences(prefs)
        # Lognormal with mean consumers.price_sensitivity.
        self.price_sensitivity = (p.price_sensitivity * price.lognormal(-0.125, 0.5, n)).astype(
            np.float32
        )
        self.impulsiveness = beta_with_mean(impulse, p.impulsiveness, 4.0, n).astype(np.float32)
        self.demand = Demand(p, self.preference, need)
        initial = [p.trust_owner, p.trust_streamer, p.trust_friend, p.trust_search]
        self.initial_trust = np.array(initial, dtype=np.float32)
        self.engagement_trust = p.engagement_trust
        self.trust = np.empty((len(Source), n), dtype=np.float32)
        for s, mean in enumerate(initial):
            self.trust[s] = np.clip(trust.normal(mean, p.trust_sd, n), 0.0, 1.0)
        self.satisfaction = np.full(n, 0.5, dtype=np.float32)
        self.group = np.full(n, -1, dtype=np.int32)  # -1: in no owner's group
        self.follows = np.zeros(n, dtype=bool)
        self.last_kept_order = np.full(n, -1, dtype=np.int64)

    def _set_preferences(self, prefs: np.ndarray) -> None:
        """Preferences and fit from freshly drawn ``prefs`` (n x C float64)."""
        # Fit of a category = preference relative to her favourite: 1 for the favourite.
        self.preference, self.fit = _preference_and_fit(prefs)

    @staticmethod
    def draw_preferences(
        adj: sp.csr_array | None,
        categories: int,
        concentration: float,
        homophily: float,
        region_size: float,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Category preferences with homophily: people near each other in the graph tend to
        like the same things.

        The graph is split into contiguous regions of about ``region_size`` consumers
        (:func:`sim.world.graph.regions`), each with a taste profile; a consumer's preferences are
        ``homophily x`` her region's taste ``+ (1 - homophily) x`` her own, both drawn from a
        Dirichlet with ``concentration`` per category. Without a graph, or with homophily 0,
        preferences are independent across consumers.
        """
        n = adj.shape[0] if adj is not None else None
        own = rng.dirichlet(np.full(categories, concentration), n)
        if adj is None:
            return own
        # Regions and tastes are drawn even when homophily is 0, so the consumer stream (and
        # every attribute drawn after it) does not depend on the homophily value.
        region = regions(adj, int(round(adj.shape[0] / region_size)), rng)
        taste = rng.dirichlet(np.full(categories, concentration), int(region.max()) + 1)
        return _blend(own, taste, region, homophily)

    def engagement(self, base_rate: np.ndarray | float, who: np.ndarray, source: int) -> np.ndarray:
        """Chance each consumer in ``who`` engages with a source today (opens her owner's posts,
        watches the streamer's session): ``base_rate`` at the initial mean trust, moved by her
        trust in the source: ``logit P = logit(base) + engagement_trust x (trust - initial)``.
        The same rule for every channel."""
        shift = self.engagement_trust * (self.trust[source, who] - self.initial_trust[source])
        return sigmoid(base_logit(base_rate) + shift)

    def update_after_delivery(
        self, who: np.ndarray, source: np.ndarray, sat: np.ndarray, gain: float, loss: float
    ) -> None:
        """Trust in the order's source and overall satisfaction move towards this order's
        satisfaction: by step ``gain`` when it is above her trust, ``loss`` when below (trust
        is built slowly and lost fast), one order at a time so that several deliveries on one
        day compound as they would in sequence."""
        for s in np.unique(source):
            m = source == s
            self.update_trust(who[m], int(s), sat[m], gain, loss)
        _smooth(self.satisfaction, who, sat, gain, loss)

    def update_trust(
        self, who: np.ndarray, source: int, experience: np.ndarray, gain: float, loss: float
    ) -> None:
        """Trust in one source moves towards each experience (a value in [0, 1]), as above."""
        _smooth(self.trust[source], who, experience, gain, loss)


@njit(cache=True, nogil=True)
def _blend(own: np.ndarray, taste: np.ndarray, region: np.ndarray, homophily: float) -> np.ndarray:
    """``homophily x taste[region] + (1 - homophily) x own``, in place in ``own`` (returned):
    one pass, no (n x C) temporaries."""
    keep = 1.0 - homophily
    for i in range(own.shape[0]):
        r = region[i]
        for j in range(own.shape[1]):
            own[i, j] = taste[r, j] * homophily + own[i, j] * keep
    return own


@njit(cache=True, nogil=True)
def _preference_and_fit(prefs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``prefs`` and ``prefs / row maximum``, both as float32 (divided in float64): one pass
    over the consumers' rows where numpy makes four over arrays of a million rows."""
    n, c = prefs.shape
    preference = np.empty((n, c), dtype=np.float32)
    fit = np.empty((n, c), dtype=np.float32)
    for i in range(n):
        top = prefs[i, 0]
        for j in range(1, c):
            top = max(top, prefs[i, j])
        for j in range(c):
            preference[i, j] = prefs[i, j]
            fit[i, j] = prefs[i, j] / top
    return preference, fit


def base_logit(base_rate: np.ndarray | float) -> np.ndarray:
    """``logit(base_rate)``, the rate clipped to [1e-9, 1 - 1e-9]: where engagement starts
    (:meth:`Consumers.engagement`, and the owners' compiled pass over their members)."""
    base = np.clip(np.asarray(base_rate, dtype=np.float64), 1e-9, 1 - 1e-9)
    return np.log(base / (1 - base))


def _smooth(x: np.ndarray, who: np.ndarray, target: np.ndarray, gain: float, loss: float) -> None:
    """``x[i] += rate * (t - x[i])`` applied in turn for each (i, t), vectorised by rounds,
    with ``rate = gain`` when ``t > x[i]`` and ``loss`` otherwise.

    A consumer with k deliveries on one day gets k sequential steps; the rounds loop runs
    max(k) times, not once per order.
    """
    if who.size == 0:
        return
    order = np.argsort(who, kind="stable")
    who, target = who[order], target[order]
    rank = rank_in_run(who)
    for r in range(int(rank.max()) + 1):
        m = rank == r
        i = who[m]
        step = target[m] - x[i]
        x[i] += np.where(step > 0, gain, loss) * step
