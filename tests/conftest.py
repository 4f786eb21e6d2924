"""Shared helpers: small worlds that run in a fraction of a second."""

from __future__ import annotations

import pytest

from sim.world.params import Params

SMALL = {
    "world": {"consumers": 4000, "brands": 20, "days": 30},
    "owners": {"count": 40},
}


def small(overrides: dict | None = None, **sections) -> Params:
    """A small world; ``overrides`` are dotted keys, e.g. {"hype.live": 2.0}."""
    data = {k: dict(v) for k, v in SMALL.items()}
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return Params.from_dict(data).with_overrides(overrides or {})


@pytest.fixture
def small_params() -> Params:
    return small()


@pytest.fixture(scope="module")
def dask_client():
    """An in-process Dask cluster (threads), as TECH-NOTES recommends inside pytest."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
