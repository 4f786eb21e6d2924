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


def test_a_failed_report_redraw_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    """fishschool report draws into a staging folder: an error half-way changes nothing."""
    import analysis.report
    from sim.cli import main

    out = tmp_path / "r"
    size = ["--consumers", "2000", "--days", "5", "--replicates", "1", "--quiet"]
    assert main(["run", *size, "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def half_then_fail(folder, *args, **kwargs):
        (folder / "report.md").write_text("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(analysis.report, "write_report", half_then_fail)
    with pytest.raises(RuntimeError):
        main(["report", str(out)])
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
