"""The mega-streamer ("whale"): followers, sessions and vetting (ODD 2 and 7.1-7.2)."""

from __future__ import annotations

import mesa
import numpy as np

from sim.world.brands import Catalogue
from sim.world.calendar import occurs_on
from sim.world.channels import Channel
from sim.world.money import BrandAccounts
from sim.world.params import StreamerParams


class MegaStreamer(mesa.Agent):
    """One head streamer. Her followers are a boolean mask over consumers (``follows``).

    Vetting (ODD 7.1): her team can check ``vetting_capacity`` products properly a week, shared
    equally over the week's sessions. A session's candidates come from the products of brands
    that hold a contract with her, in random order; the team checks the first ones its capacity
    allows and drops those below ``vetting_threshold`` quality; the rest go on air unchecked, at
    their brand's unscreened quality. With more products a session, a smaller share of what goes
    on air was checked, and its average quality is lower. A product goes on air at most once a
    session: when fewer products pass than there are slots, the session is shorter.
    """

    def __init__(self, model: mesa.Model, p: StreamerParams):
        super().__init__(model)
        self.p = p
        self.active = True
        self.lineup = np.zeros(0, dtype=np.int64)
        self.vetted = np.zeros(0, dtype=bool)

    def session_today(self, day: int) -> bool:
        return self.active and occurs_on(day, self.p.sessions_per_week)

    def checks_per_session(self, rng: np.random.Generator) -> int:
        """How many products the team checks for one session: the week's capacity over the
        week's sessions (a fractional part is a chance of one more)."""
        per_session = self.p.vetting_capacity / max(self.p.sessions_per_week, 1e-9)
        whole = int(per_session)
        return whole + int(rng.random() < per_session - whole)

    def build_lineup(
        self, catalogue: Catalogue, contracted: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Products on air in today's session, from brands with a contract (vetted as above).

        Sets ``lineup`` and ``vetted`` (per slot: was its product checked?)."""
        pool = np.flatnonzero(contracted)
        checks = self.checks_per_session(rng)
        candidates = rng.permutation(pool)
        checked = np.arange(candidates.size) < checks
        good = catalogue.base_quality[candidates] >= self.p.vetting_threshold
        on_air = ~checked | good
        n = self.p.products_per_session
        self.lineup = candidates[on_air][:n]
        self.vetted = checked[on_air][:n]
        return self.lineup

    def sign_brands(
        self,
        accounts: BrandAccounts,
        products_of_brand: np.ndarray,
        eligible: np.ndarray,
        rng: np.random.Generator,
    ) -> int:
        """After the brands' reviews, her team signs new brands (in random order, among the
        eligible ones that have never held her contract) until her pool fills a session again.
        Returns how many brands she signed (none once she is banned)."""
        col = accounts.contracts[:, Channel.STREAMER]
        need = self.p.products_per_session - int(products_of_brand[col].sum())
        if not self.active or need <= 0:
            return 0
        free = eligible & ~col & (accounts.left_day[:, Channel.STREAMER] < 0)
        candidates = rng.permutation(np.flatnonzero(free))
        enough = np.searchsorted(np.cumsum(products_of_brand[candidates]), need) + 1
        signed = candidates[:enough]
        accounts.contracts[signed, Channel.STREAMER] = True
        return int(signed.size)

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
