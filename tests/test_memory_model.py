"""The memory model: what a world holds per consumer, edge, order and owner."""

from __future__ import annotations

from sim.experiments.calibration import calibration_world
from sim.experiments.resources import resident_bytes
from sim.world.model import CommerceModel
from sim.world.orders import Orders


def _held(consumers: int) -> dict:
    model = CommerceModel(calibration_world(consumers, 10).params)
    for _ in range(10):
        model.step()
    return resident_bytes(model)


def test_bytes_per_consumer_and_edge_do_not_depend_on_size_and_every_array_is_counted():
    small, large = _held(4000), _held(8000)
    assert small["consumers"]["per"] == large["consumers"]["per"] > 100  # the same arrays
    assert abs(small["edges"]["per"] / large["edges"]["per"] - 1) < 0.05
    # The order book allocates whole rows ahead (doubling): a multiple of a row's bytes.
    row = sum(col.itemsize for col in Orders(1)._cols.values())
    assert large["orders"]["bytes"] % row == 0 and large["orders"]["per"] >= row
    assert large["owners"]["count"] > 0 and large["owners"]["per"] > 0
    # What is left (catalogue, brands, recorder) does not grow with the consumers.
    assert large["other"]["bytes"] < 1.2 * small["other"]["bytes"]
