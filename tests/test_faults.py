"""Faults: what a killed command leaves behind."""

from __future__ import annotations

import sys
import time

import pytest


@pytest.mark.slow
def test_workers_end_when_the_main_process_is_killed(tmp_path):
    """kill -9 of the main process: its worker processes exit within seconds, not minutes."""
    psutil = pytest.importorskip("psutil")
    args = ["run", "hybrid", "--consumers", "30000", "--replicates", "4", "--workers", "2"]
    args += ["--quiet", "--out", str(tmp_path / "r")]
    code = f"from sim.cli import main; raise SystemExit(main({args!r}))"
    main = psutil.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 60
        workers: list = []
        while time.time() < deadline and len(workers) < 3:  # the forkserver and two workers
            workers = main.children(recursive=True)
            time.sleep(0.2)
        assert len(workers) >= 3, workers
    finally:
        main.kill()
        main.wait(10)
    gone, alive = psutil.wait_procs(workers, timeout=15)
    for p in alive:
        p.kill()
    assert not alive, alive
