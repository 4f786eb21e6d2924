"""The platform (the "ocean"): product selection, 2b live training and after-sales service."""

from __future__ import annotations

import mesa
import numpy as np

from sim.world.brands import Catalogue
from sim.world.calendar import occurs_on
from sim.world.params import PlatformParams


class Platform(mesa.Agent):
    """Selects the brands owners may sell and trains owners (its after-sales service is
    a capacity of :mod:`sim.world.funnel`'s service submodel).

    Selection (ODD 7.1): the platform audits every brand's quality with an error of sd
    ``selection_noise`` and rejects the worst-looking ``selection_strictness`` share of brands.
    Stricter selection therefore admits fewer defect-prone brands, imperfectly; a selected
    brand's product can still be weak, and a selected brand can still ship a defective batch.
    """

    def __init__(self, model: mesa.Model, p: PlatformParams):
        super().__init__(model)
        self.p = p
        self.selected: np.ndarray = np.zeros(0, dtype=bool)

    def select(self, catalogue: Catalogue, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask of admitted brands (at least one brand is always admitted)."""
        brands = catalogue.brand_quality.size
        audited = catalogue.brand_quality + rng.normal(0.0, self.p.selection_noise, brands)
        rejected = int(np.floor(self.p.selection_strictness * brands))
        self.selected = np.zeros(brands, dtype=bool)
        self.selected[np.argsort(audited, kind="stable")[rejected:]] = True
        if not self.selected.any():
            self.selected[np.argmax(audited)] = True
        return self.selected

    def live_2b_today(self, day: int) -> bool:
        """Is there a 2b live training session today?"""
        return occurs_on(day, self.p.live_2b_per_week)
