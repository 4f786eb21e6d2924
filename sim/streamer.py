"""The mega-streamer ("whale"): followers, sessions, vetting and hype (ODD 2 and 7.1-7.2)."""

from __future__ import annotations

import mesa
import numpy as np

from sim.brands import Catalogue
from sim.calendar import occurs_on
from sim.params import StreamerParams


class MegaStreamer(mesa.Agent):
    """One head streamer. Her followers are a boolean mask over consumers (``follows``).

    Vetting (ODD 7.1): her team can check ``vetting_capacity`` products properly per session.
    Candidates come in random order; the team checks the first ``capacity`` of them and drops
    those below ``vetting_threshold`` quality; candidates beyond that go on air unchecked. With
    more products a session, a smaller share of what goes on air was checked, and its average
    quality is lower.
    """

    def __init__(self, model: mesa.Model, p: StreamerParams):
        super().__init__(model)
        self.p = p
        self.active = True
        self.lineup = np.zeros(0, dtype=np.int64)

    def session_today(self, day: int) -> bool:
        return self.active and occurs_on(day, self.p.sessions_per_week)

    def build_lineup(
        self, catalogue: Catalogue, contracted: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Products on air in today's session, from brands that pay (vetted as above)."""
        pool = np.flatnonzero(contracted)
        if pool.size == 0:
            self.lineup = pool
            return pool
        n = self.p.products_per_session
        capacity = self.p.vetting_capacity
        checks = int(capacity) + int(rng.random() < capacity - int(capacity))  # fractional part
        # Each distinct candidate is checked (or not) once; a checked product below the
        # threshold is dropped. When fewer products pass than there are slots, the passed ones
        # are pitched again (a long session repeats its hits).
        candidates = rng.permutation(pool)
        checked = np.arange(candidates.size) < checks
        good = catalogue.base_quality[candidates] >= self.p.vetting_threshold
        passed = candidates[~checked | good]
        if passed.size == 0:
            self.lineup = passed
        else:
            self.lineup = passed[:n] if passed.size >= n else np.resize(passed, n)
        return self.lineup

    def slot_fees(self, products: int, followers: int) -> float:
        """What brands pay for today's slots: a fee per product, scaled by the audience so a
        scaled-down world pays scaled-down fees (300k RMB for ~50M followers in the brief)."""
        return self.p.slot_fee * products * followers / 1000.0

    def products_watched(self, viewers: np.ndarray, rng: np.random.Generator):
        """Each viewer watches a contiguous stretch of ``products_seen`` products of the lineup
        (she tunes in at a random point). Returns (viewer per exposure, product per exposure)."""
        n = self.lineup.size
        k = min(self.p.products_seen, n)
        if n == 0 or viewers.size == 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
        start = rng.integers(0, n, viewers.size)
        pos = (start[:, None] + np.arange(k)[None, :]) % n
        return np.repeat(viewers, k), self.lineup[pos.ravel()]
