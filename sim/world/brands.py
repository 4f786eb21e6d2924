"""Brands (Mesa agents) and the catalogue of their products (arrays).

A :class:`Brand` holds its products and its streamer contract; the other channel terms
(commissions, discounts, ad cost per exposure) are the same for every brand. Products live in a
:class:`Catalogue` of arrays because every exposure looks them up: category, list price,
quality (the chance an item is free of defects: its brand's quality plus its own spread), margin
and brand.
"""

from __future__ import annotations

import mesa
import numpy as np
import pandas as pd

from sim.world.distributions import beta_with_mean
from sim.world.params import BrandParams, WorldParams
from sim.world.ragged import starts


class Brand(mesa.Agent):
    """A brand: its products. Its contracts and accounts per channel are rows of
    :class:`sim.world.money.BrandAccounts` (arrays, so every sale books without a Python loop)."""

    def __init__(self, model: mesa.Model, brand_id: int, products: np.ndarray):
        super().__init__(model)
        self.brand_id = brand_id
        self.products = products


class Catalogue:
    """All products as arrays, plus the category index used by search."""

    def __init__(self, world: WorldParams, p: BrandParams, rng: np.random.Generator):
        n = world.brands * world.products_per_brand
        self.n = n
        self.brand = np.repeat(np.arange(world.brands, dtype=np.int32), world.products_per_brand)
        # Every category is stocked (when there are enough products): a shuffled round-robin.
        category, price, quality, margin, brand_quality = rng.spawn(5)  # a stream per attribute
        cats = np.arange(n) % world.categories
        category.shuffle(cats)
        self.category = cats.astype(np.int32)
        self.list_price = p.price_median * np.exp(price.normal(0.0, p.price_sigma, n))
        # Quality is mostly the brand's (its factories, its checks), plus a product's own spread.
        self.brand_quality = beta_with_mean(
            brand_quality, p.quality, p.quality_concentration, world.brands
        )
        mean = self.brand_quality[self.brand]
        k = p.product_quality_concentration
        a, b = np.maximum(mean * k, 1e-9), np.maximum((1 - mean) * k, 1e-9)
        self.base_quality = np.where((mean > 0) & (mean < 1), quality.beta(a, b), mean)
        self.quality = self.base_quality.copy()  # today's quality (events can lower it)
        self.margin = np.clip(margin.normal(p.margin, p.margin_sigma, n), 0.0, 1.0)
        self.cost = self.list_price * (1.0 - self.margin)
        n_apparel = int(round(world.apparel_share * world.categories))
        self.apparel_category = np.zeros(world.categories, dtype=bool)
        self.apparel_category[:n_apparel] = True
        self.median_price = p.price_median

    @property
    def apparel(self) -> np.ndarray:
        """Per product: is it in an apparel-like category?"""
        return self.apparel_category[self.category]

    def to_frame(self) -> pd.DataFrame:
        """The catalogue as a table, one row per product."""
        return pd.DataFrame(
            {
                "product": np.arange(self.n),
                "brand": self.brand,
                "category": self.category,
                "apparel": self.apparel,
                "list_price": self.list_price,
                "brand_quality": self.brand_quality[self.brand],
                "quality": self.base_quality,
                "margin": self.margin,
            }
        )

    def by_category(self, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Index of the allowed products grouped by category: (products, start, count)."""
        idx = np.flatnonzero(allowed)
        idx = idx[np.argsort(self.category[idx], kind="stable")]
        k = self.apparel_category.size
        count = np.bincount(self.category[idx], minlength=k)
        return idx, starts(count), count

    def pick_in_category(
        self,
        index: tuple[np.ndarray, np.ndarray, np.ndarray],
        category: np.ndarray,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """A uniformly random product of each requested category (-1 where none is stocked)."""
        idx, start, count = index
        if idx.size == 0:  # no brand sells in the channel any more
            return np.full(category.size, -1, dtype=np.int64)
        c = count[category]
        pos = start[category] + (rng.random(category.size) * c).astype(np.int64)
        return np.where(c > 0, idx[np.minimum(pos, max(idx.size - 1, 0))], -1)
