"""The order book: every order of a run as columns of growable numpy arrays.

One row per order, appended in the order they are placed; the columns say who bought what,
through which channel and source, at what price, what she expected, and, once delivered,
whether the item was defective, a misfit, resolved by after-sales service or returned, and how
satisfied she was. Status codes: ``PENDING``, ``KEPT``, ``RETURNED``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sim.world.channels import CHANNELS, SOURCES

PENDING, KEPT, RETURNED = 0, 1, 2

_COLUMNS: dict[str, type] = {
    "day": np.int32,
    "consumer": np.int32,
    "product": np.int32,
    "brand": np.int32,
    "channel": np.int8,
    "source": np.int8,
    "owner": np.int32,  # -1 unless sold through an owner's link
    "list_price": np.float64,
    "paid": np.float64,
    "fit": np.float32,  # expected fit at purchase, before hype
    "expected": np.float32,  # fit inflated by hype
    "impulse": np.float32,  # hype x impulsiveness at purchase
    "delivery_day": np.int32,
    "status": np.int8,
    "defect": np.bool_,
    "misfit": np.bool_,
    "resolved": np.bool_,
    "satisfaction": np.float32,
    # The order's own random numbers for its delivery, drawn when it is placed (common random
    # numbers: its fate does not depend on the other orders delivered that day).
    "u_defect": np.float32,
    "z_fit": np.float32,
    "u_resolve": np.float32,
    "u_return": np.float32,
}


_RANDOM_NUMBERS = ("u_defect", "z_fit", "u_resolve", "u_return")


class Orders:
    """Append-only order book with amortised O(1) appends."""

    def __init__(self, capacity: int = 1024) -> None:
        self.size = 0
        self._cols: dict[str, np.ndarray] = {
            name: np.zeros(capacity, dtype=dt) for name, dt in _COLUMNS.items()
        }

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, name: str) -> np.ndarray:
        """A column, trimmed to the orders placed so far (a view: writes go through)."""
        return self._cols[name][: self.size]

    def append(self, **columns: np.ndarray | int) -> np.ndarray:
        """Add orders; returns their row indices. Missing columns keep their zero default."""
        k = np.size(columns["consumer"])
        need = self.size + k
        cap = len(self._cols["day"])
        if need > cap:
            new_cap = max(need, 2 * cap)
            for name, col in self._cols.items():
                grown = np.zeros(new_cap, dtype=col.dtype)
                grown[: self.size] = col[: self.size]
                self._cols[name] = grown
        rows = np.arange(self.size, need)
        for name, values in columns.items():
            self._cols[name][self.size : need] = values
        self.size = need
        return rows

    def to_frame(self) -> pd.DataFrame:
        """The order book as a DataFrame with channel and source as labels."""
        shown = [c for c in _COLUMNS if c not in _RANDOM_NUMBERS]
        df = pd.DataFrame({name: self[name].copy() for name in shown})
        df["channel"] = pd.Categorical.from_codes(df["channel"], CHANNELS)
        df["source"] = pd.Categorical.from_codes(df["source"], SOURCES)
        df["status"] = pd.Categorical.from_codes(df["status"], ["pending", "kept", "returned"])
        return df
