"""The platform (the "ocean"): product selection, 2b live training and after-sales service."""

from __future__ import annotations

import mesa
import numpy as np

from sim.brands import Catalogue
from sim.calendar import occurs_on
from sim.params import PlatformParams


class Platform(mesa.Agent):
    """Selects the catalogue owners may sell, trains owners, and resolves problems.

    Selection (ODD 7.1): the platform inspects every product with an error of sd
    ``selection_noise`` and rejects the worst-looking ``selection_strictness`` share. Stricter
    selection therefore admits fewer defect-prone products, imperfectly.
    """

    def __init__(self, model: mesa.Model, p: PlatformParams):
        super().__init__(model)
        self.p = p
        self.selected: np.ndarray = np.zeros(0, dtype=bool)

    def select(self, catalogue: Catalogue, rng: np.random.Generator) -> np.ndarray:
        """Boolean mask of admitted products (at least one product is always admitted)."""
        inspected = catalogue.base_quality + rng.normal(0.0, self.p.selection_noise, catalogue.n)
        cut = np.quantile(inspected, self.p.selection_strictness)
        self.selected = inspected >= cut
        if not self.selected.any():
            self.selected[np.argmax(inspected)] = True
        return self.selected

    def live_2b_today(self, day: int) -> bool:
        """Is there a 2b live training session today?"""
        return occurs_on(day, self.p.live_2b_per_week)
