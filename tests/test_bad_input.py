"""Bad input: one line on stderr naming the file, option or key and what is allowed, exit
status 2, nothing written, checked before any work, never a traceback. And Ctrl-C: one line,
status 130, no half-written output, no processes left behind.

``BAD`` is the table of bad invocations; each runs in a fresh folder (the current folder too,
so a default ``results/`` would show) and must leave it exactly as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import sim.experiments.resources
from sim.cli import main
from sim.experiments.scenario import ScenarioError, load, shipped_dir

SEED_2_70 = str(2**70)
SHIPPED_SWEEP = shipped_dir() / "sweeps" / "owners_vs_streamer_robustness.toml"
TINY = ["--consumers", "2000", "--owners", "5", "--days", "2", "--workers", "1"]
ISHIGAMI = """model = "ishigami"
design = "random"
samples = 4
metrics = ["y"]
[uncertainties]
x1 = [-3.0, 3.0]
x2 = [-3.0, 3.0]
x3 = [-3.0, 3.0]
"""


# -- fixtures: a results folder and a sweep folder, made once ----------------------------------
@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict[str, Path]:
    """A results folder of ``run``, a folder of ``explain`` and a sweep folder, to damage."""
    root = tmp_path_factory.mktemp("saved")
    results = root / "results"
    assert main(["run", *TINY, "--out", str(results), "--quiet", "--no-report"]) == 0
    explained = root / "explained"
    args = ["explain", "hybrid", "--channels", "owners", "streamer", *TINY, "--replicates", "1"]
    assert main([*args, "--out", str(explained), "--quiet"]) == 0
    sweep_file = root / "ishigami.toml"
    sweep_file.write_text(ISHIGAMI)
    sweep = root / "sweep"
    assert main(["sweep", str(sweep_file), "--workers", "1", "--out", str(sweep), "--quiet"]) == 0
    return {"results": results, "explained": explained, "sweep": sweep}


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _scenario(tmp: Path, text: str, name: str = "s.toml") -> str:
    return str(_write(tmp / name, text))


def _sweep_file(tmp: Path, extra: str = "") -> str:
    return str(_write(tmp / "sw.toml", extra + ISHIGAMI))


def _damaged_results(saved: dict, tmp: Path, damage: Callable[[Path], None]) -> str:
    folder = _copy(saved["results"], tmp / "r")
    damage(folder)
    return str(folder)


def _damaged_sweep(saved: dict, tmp: Path, damage: Callable[[Path], None]) -> str:
    folder = _copy(saved["sweep"], tmp / "sw")
    damage(folder)
    return str(folder)


# -- the table ------------------------------------------------------------------------------------
# (id, setup(tmp, saved) -> argv, expected part of the one line)
Case = tuple[str, Callable[[Path, dict], list[str]], str]


def _numbers() -> list[Case]:
    """Every number option of every command that takes it: one type function per kind."""
    cases: list[Case] = []
    bad = [
        ("--workers", "-1", "--workers -1 is outside the allowed range [1, ...)"),
        ("--workers", "0", "--workers 0 is outside the allowed range [1, ...)"),
        ("--workers", "two", "--workers two is not a whole number"),
        ("--replicates", "-1", "--replicates -1: replicates = -1 is outside the allowed range"),
        ("--replicates", "0", "--replicates 0: replicates = 0 is outside the allowed range [1,"),
        (
            "--seed",
            "-1",
            "--seed -1: seed = -1 is outside the allowed range [0, 9223372036854775807]",
        ),
        ("--seed", SEED_2_70, f"seed = {SEED_2_70} is outside the allowed range [0, 92233720368"),
        ("--seed", "2**70", "--seed 2**70 is not a whole number"),
        ("--consumers", "0", "--consumers 0: world.consumers = 0 is outside the allowed range [2,"),
        ("--days", "0", "--days 0: world.days = 0 is outside the allowed range [1, 100000]"),
        ("--owners", "-1", "--owners -1: levers.owners.count = -1 is outside the allowed range"),
    ]
    commands = {
        "run": (
            lambda t: ["run"],
            {"--workers", "--replicates", "--seed", "--consumers", "--days", "--owners"},
        ),
        "compare": (
            lambda t: ["compare", "owners", "streamer"],
            {"--workers", "--replicates", "--seed", "--consumers", "--days", "--owners"},
        ),
        "explain": (
            lambda t: ["explain", "hybrid", "owners"],
            {"--workers", "--replicates", "--seed", "--consumers", "--days", "--owners"},
        ),
        "sweep": (lambda t: ["sweep", str(SHIPPED_SWEEP)], {"--workers"}),
        "calibrate": (
            lambda t: ["calibrate", "--out", str(t / "cal")],
            {"--workers", "--replicates", "--seed", "--consumers", "--days"},
        ),
    }
    for command, (head, takes) in commands.items():
        for option, value, message in bad:
            if option in takes:
                cases.append(
                    (
                        f"{command} {option} {value}",
                        lambda t, s, h=head, o=option, v=value: [*h(t), o, v],
                        message,
                    )
                )
    cases += [
        (
            "compare --explain-replicates 0",
            lambda t, s: [
                "compare",
                "owners",
                "streamer",
                "--explain",
                "--explain-replicates",
                "0",
            ],
            "--explain-replicates 0 is outside the allowed range [1, ...)",
        ),
        (
            "calibrate --population 5",
            lambda t, s: ["calibrate", "--population", "5"],
            "--population 5 is outside the allowed range [10, 100000]",
        ),
        (
            "calibrate --generations 0",
            lambda t, s: ["calibrate", "--generations", "0"],
            "--generations 0 is outside the allowed range [1, 100]",
        ),
        (
            "calibrate --targets missing",
            lambda t, s: ["calibrate", "--targets", str(t / "none.toml")],
            "none.toml: file not found",
        ),
        (
            "calibrate --targets without priors",
            lambda t, s: [
                "calibrate",
                "--targets",
                str(
                    _write(
                        t / "t.toml",
                        '[targets.T]\npattern = "p"\nchannel = "owners"\n'
                        'metric = "return_rate"\nlow = 0.1\nhigh = 0.2\nsource = "s"\n',
                    )
                ),
            ],
            "no [priors]: nothing to calibrate",
        ),
        (
            "calibrate --targets with an unknown metric",
            lambda t, s: [
                "calibrate",
                "--targets",
                str(
                    _write(
                        t / "t.toml",
                        '[targets.T]\npattern = "p"\nchannel = "owners"\nmetric = "retrun"\n'
                        'low = 0.1\nhigh = 0.2\nsource = "s"\n[priors]\n"returns.gap" = [1, 2]\n',
                    )
                ),
            ],
            "targets.T: metric = 'retrun' is neither a summary metric nor [derived]",
        ),
        (
            "viz --consumers 0",
            lambda t, s: ["viz", "--no-open", "--consumers", "0"],
            "--consumers 0 is outside the allowed range [2, 50000000]",
        ),
        (
            "viz --port 99999",
            lambda t, s: ["viz", "--no-open", "--port", "99999"],
            "--port 99999 is outside the allowed range [1, 65535]",
        ),
        (
            "viz --port 0",
            lambda t, s: ["viz", "--no-open", "--port", "0"],
            "--port 0 is outside the allowed range [1, 65535]",
        ),
        (
            "an unknown option",
            lambda t, s: ["run", "--replicate", "3"],
            "unrecognized arguments: --replicate",
        ),
    ]
    return cases


SCHEDULER = [
    (
        "sweep --scheduler foo://x",
        lambda t, s: ["sweep", str(SHIPPED_SWEEP), "--scheduler", "foo://x"],
        "--scheduler foo://x is not a Dask scheduler address (expected tcp://, tls://, ucx://",
    ),
    (
        "calibrate --scheduler foo://x",
        lambda t, s: ["calibrate", "--scheduler", "foo://x"],
        "--scheduler foo://x is not a Dask scheduler address",
    ),
    (
        "sweep with DASK_SCHEDULER_ADDRESS=foo://x",
        lambda t, s: (
            os.environ.__setitem__("DASK_SCHEDULER_ADDRESS", "foo://x")
            or ["sweep", str(SHIPPED_SWEEP)]
        ),  # the test's monkeypatch restores the environment
        "DASK_SCHEDULER_ADDRESS foo://x is not a Dask scheduler address",
    ),
    (
        "sweep --scheduler host:8786 (no scheme)",
        lambda t, s: ["sweep", str(SHIPPED_SWEEP), "--scheduler", "host:8786"],
        "--scheduler host:8786 is not a Dask scheduler address",
    ),
]

OUT = (
    [
        (
            f"{cmd} --out under a file",
            lambda t, s, a=args: [*a(t), "--out", str(_write(t / "file.txt", "x") / "sub")],
            "file.txt is a file, not a folder",
        )
        for cmd, args in [
            ("run", lambda t: ["run", *TINY]),
            ("compare", lambda t: ["compare", "owners", "streamer", *TINY]),
            ("explain", lambda t: ["explain", "hybrid", "owners", *TINY]),
            ("sweep", lambda t: ["sweep", str(SHIPPED_SWEEP)]),
            ("calibrate", lambda t: ["calibrate"]),
            ("validate-model", lambda t: ["validate-model", "--size", "small"]),
        ]
    ]
    + [
        (
            f"{cmd} --out under /proc",
            lambda t, s, a=args: [*a(t), "--out", "/proc/fishschool-test/out"],
            "--out /proc/fishschool-test/out: cannot write in /proc",
        )
        for cmd, args in [
            ("run", lambda t: ["run", *TINY]),
            ("explain", lambda t: ["explain", "hybrid", "owners", *TINY]),
            ("sweep", lambda t: ["sweep", str(SHIPPED_SWEEP)]),
            ("calibrate", lambda t: ["calibrate"]),
            ("validate-model", lambda t: ["validate-model", "--size", "small"]),
        ]
    ]
    + [
        (
            "run --out is a file",
            lambda t, s: ["run", *TINY, "--out", str(_write(t / "file.txt", "x")), "--force"],
            "file.txt: exists and is not a folder",
        ),
        (
            "run --out is a long name",
            lambda t, s: ["run", *TINY, "--out", str(t / ("x" * 250))],
            "the folder's name is too long",
        ),
        (
            "validate-model --out a user's file",
            lambda t, s: ["validate-model", "--out", str(_write(t / "notes.md", "# My notes\n"))],
            "exists and is not a validation report of fishschool",
        ),
        (
            "validate-model --out a folder",
            lambda t, s: ["validate-model", "--out", str(_write(t / "d" / "f", "x").parent)],
            "is a folder, not a file",
        ),
        (
            "calibrate --out a folder of notes",
            lambda t, s: ["calibrate", "--out", str(_write(t / "notes" / "n.md", "x").parent)],
            "not a calibration folder",
        ),
        (
            "report on a folder that cannot be written",
            lambda t, s: ["report", str(t / "r")],
            "cannot write in",
        ),
    ]
)

NAMES = [
    (
        f"name = {name!r}",
        lambda t, s, n=name: ["run", _scenario(t, f"name = {json.dumps(n)}\n"), *TINY],
        "is not a plain name",
    )
    for name in ["../../x", "/tmp/abs", "a/b", "a\\b", ".hidden", "-x", "..", "", "a b", "x" * 101]
] + [
    (
        "validate name = '../x'",
        lambda t, s: ["validate", _scenario(t, 'name = "../x"\n')],
        "s.toml: name = '../x' is not a plain name",
    ),
    (
        "a file name that is not a plain name",
        lambda t, s: ["validate", _scenario(t, "seed = 1\n", "my notes.toml")],
        "my notes.toml: name (from the file name; set name = ... in the file) = 'my notes'",
    ),
    (
        "sweep name = '../x'",
        lambda t, s: ["sweep", _sweep_file(t, 'name = "../../x"\n')],
        "sw.toml: name = '../../x' is not a plain name",
    ),
    (
        "validate a sweep with name = '/x'",
        lambda t, s: ["validate", _sweep_file(t, 'name = "/x"\n')],
        "sw.toml: name = '/x' is not a plain name",
    ),
]

EDGELIST = '[world]\ngraph.topology = "edgelist"\ngraph.edgelist_path = {path}\n'
EDGES = [
    (
        "edge list missing",
        lambda t, s: ["validate", _scenario(t, EDGELIST.format(path='"nowhere.txt"'))],
        "graph.edgelist_path = '{t}/nowhere.txt': file not found",
    ),
    (
        "edge list missing (run)",
        lambda t, s: ["run", _scenario(t, EDGELIST.format(path='"nowhere.txt"'))],
        "nowhere.txt': file not found",
    ),
    (
        "edge list a folder",
        lambda t, s: ["validate", _scenario(t, EDGELIST.format(path='"."'))],
        "is a folder",
    ),
    (
        "edge list not text",
        lambda t, s: [
            "validate",
            _scenario(t, EDGELIST.format(path='"e.bin"')),
            str(_write(t / "e.bin", bytes(range(256)) * 4)),
        ][:2],
        "e.bin': not an edge list (not a text file)",
    ),
    (
        "edge list of one column",
        lambda t, s: [
            "validate",
            _scenario(t, EDGELIST.format(path='"e.txt"')),
            str(_write(t / "e.txt", "1\n2\n3\n")),
        ][:2],
        "e.txt': not an edge list (a line needs two node ids",
    ),
    (
        "edge list empty",
        lambda t, s: [
            "validate",
            _scenario(t, EDGELIST.format(path='"e.txt"')),
            str(_write(t / "e.txt", "# nothing\n")),
        ][:2],
        "the edge list has no edges",
    ),
    (
        "edge list by --set, missing",
        lambda t, s: [
            "validate",
            "hybrid",
            "--set",
            "graph.topology=edgelist",
            "--set",
            "graph.edgelist_path=no.txt",
        ],
        "no.txt': file not found",
    ),
]

FILES = [
    (
        "a folder as the sweep file",
        lambda t, s: ["sweep", str((t / "d").mkdir() or t / "d")],
        "d: is a folder, not a sweep file",
    ),
    ("a missing sweep file", lambda t, s: ["sweep", str(t / "no.toml")], "no.toml: file not found"),
    (
        "a sweep file that is not TOML",
        lambda t, s: ["sweep", str(_write(t / "x.toml", b"\x00\xff\xfe"))],
        "not a text file",
    ),
    (
        "a folder as the scenario",
        lambda t, s: ["validate", str((t / "d.toml").mkdir() or t / "d.toml")],
        "no such scenario file",
    ),
    (
        "--set of a parameter the sweep varies",
        lambda t, s: ["validate", _sweep_file(t), "--set", "uncertainties.x1=1.0"],
        "--set uncertainties.x1=1.0: the sweep varies this parameter",
    ),
    (
        "validate a bad sweep file",
        lambda t, s: ["validate", _sweep_file(t, "levels = 1\n")],
        "levels = 1 must be an integer in [2, 1000]",
    ),
    (
        "validate-model --posterior not a CSV of ranges",
        lambda t, s: [
            "validate-model",
            "--out",
            str(t / "v.md"),
            "--posterior",
            str(_write(t / "p.csv", "x\n1\n")),
        ],
        "--posterior",
    ),
]

RESULTS = [
    ("report: no such folder", lambda t, s: ["report", str(t / "none")], "none: no such folder"),
    ("report: a file", lambda t, s: ["report", str(_write(t / "f", "x"))], "f: not a folder"),
    (
        "report: truncated timeseries.parquet",
        lambda t, s: [
            "report",
            _damaged_results(s, t, lambda f: _truncate(f / "timeseries.parquet")),
        ],
        "timeseries.parquet: truncated or corrupt (not a readable Parquet file",
    ),
    (
        "report: truncated owners.parquet",
        lambda t, s: ["report", _damaged_results(s, t, lambda f: _truncate(f / "owners.parquet"))],
        "owners.parquet: truncated or corrupt",
    ),
    (
        "report: truncated manifest.json",
        lambda t, s: ["report", _damaged_results(s, t, lambda f: _truncate(f / "manifest.json"))],
        "manifest.json: truncated or corrupt (not valid JSON",
    ),
    (
        "report: manifest.json not an object",
        lambda t, s: [
            "report",
            _damaged_results(s, t, lambda f: _write(f / "manifest.json", "[1, 2]")),
        ],
        "manifest.json: truncated or corrupt (not a JSON object)",
    ),
    (
        "report: manifest.json of another tool",
        lambda t, s: [
            "report",
            _damaged_results(s, t, lambda f: _write(f / "manifest.json", "{}")),
        ],
        "manifest.json: not a results folder of fishschool run or compare",
    ),
    (
        "report: manifest.json without its scenarios",
        lambda t, s: [
            "report",
            _damaged_results(
                s,
                t,
                lambda f: _write(
                    f / "manifest.json",
                    json.dumps(
                        {
                            **json.loads((f / "manifest.json").read_text()),
                            "scenarios": [{"name": "x"}],
                        }
                    ),
                ),
            ),
        ],
        "manifest.json: truncated or corrupt (a scenario without its parameters)",
    ),
    (
        "report: empty summary.csv",
        lambda t, s: ["report", _damaged_results(s, t, lambda f: _write(f / "summary.csv", ""))],
        "summary.csv: empty (no header, no rows)",
    ),
    (
        "report: summary.csv with a header only",
        lambda t, s: [
            "report",
            _damaged_results(
                s,
                t,
                lambda f: _write(
                    f / "summary.csv", "scenario,replicate,seed,channel,metric,value\n"
                ),
            ),
        ],
        "summary.csv: has no rows",
    ),
    (
        "report: truncated summary.csv",
        lambda t, s: [
            "report",
            _damaged_results(s, t, lambda f: _write(f / "summary.csv", "scenario,replicate\n")),
        ],
        "summary.csv: truncated or corrupt (no column seed, channel, metric, value)",
    ),
    (
        "report: missing owners.parquet",
        lambda t, s: ["report", _damaged_results(s, t, lambda f: (f / "owners.parquet").unlink())],
        "not a results folder (missing owners.parquet)",
    ),
    (
        "report: an explanation folder",
        lambda t, s: ["report", str(_copy(s["explained"], t / "e"))],
        "not a results folder",
    ),
    (
        "analyze: truncated sweep.parquet",
        lambda t, s: ["analyze", _damaged_sweep(s, t, lambda f: _truncate(f / "sweep.parquet"))],
        "sweep.parquet: truncated or corrupt (not a readable Parquet file",
    ),
    (
        "analyze: truncated manifest.json",
        lambda t, s: ["analyze", _damaged_sweep(s, t, lambda f: _truncate(f / "manifest.json"))],
        "manifest.json: truncated or corrupt (not valid JSON",
    ),
    (
        "analyze: a results folder",
        lambda t, s: ["analyze", str(_copy(s["results"], t / "r"))],
        "not a sweep folder (missing sweep.parquet)",
    ),
]

BIG = ["--consumers", "50000000"]
MEMORY = [
    (f"{cmd} of 50M consumers", lambda t, s, a=args: a(t), "needs about 49.0 GiB of memory")
    for cmd, args in [
        ("run", lambda t: ["run", *BIG]),
        ("compare", lambda t: ["compare", "owners", "streamer", *BIG]),
        ("explain", lambda t: ["explain", "hybrid", "owners", *BIG]),
        ("calibrate", lambda t: ["calibrate", *BIG, "--out", str(t / "cal")]),
        ("viz", lambda t: ["viz", "--no-open", *BIG, "--set", "world.consumers=50000000"]),
        ("sweep", lambda t: ["sweep", _write_big_sweep(t)]),
    ]
]


def _write_big_sweep(t: Path) -> str:
    text = f'extends = "{shipped_dir() / "hybrid.toml"}"\nsamples = 2\n'
    text += "[levers]\nplatform.selection_strictness = [0.0, 0.5]\n"
    text += "[uncertainties]\npurchase.trust = [1.0, 2.0]\n"
    text += "[world]\nconsumers = 50000000\n"  # held fixed: too large for this machine
    return str(_write(t / "big.toml", text))


BAD = _numbers() + SCHEDULER + OUT + NAMES + EDGES + FILES + RESULTS + MEMORY


def _snapshot(folder: Path) -> dict[str, str]:
    """Every path under ``folder`` with a hash of its bytes (folders: 'dir')."""
    out = {}
    for p in sorted(folder.rglob("*")):
        out[str(p.relative_to(folder))] = (
            "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
        )
    return out


@pytest.mark.parametrize(("case", "setup", "message"), BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    tmp_path, capsys, monkeypatch, saved, case, setup, message
):
    monkeypatch.chdir(tmp_path)  # a default results/ would appear here
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: 8 * 2**30)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "")  # none; restored after the test
    argv = setup(tmp_path, saved)
    if case == "report on a folder that cannot be written":
        _copy(saved["results"], tmp_path / "r")
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, m, **k: False if Path(p) == tmp_path / "r" else real(p, m, **k)
        )
    before = _snapshot(tmp_path)
    capsys.readouterr()
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("fishschool: error: "), lines[0]
    assert message.replace("{t}", str(tmp_path.resolve())) in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert _snapshot(tmp_path) == before  # nothing created, changed or removed


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_out_in_a_read_only_folder(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert main(["run", *TINY, "--out", str(ro / "out")]) == 2
        assert f"cannot write in {ro} (permission denied)" in capsys.readouterr().err
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_out_in_a_read_only_folder_as_root_too(tmp_path, capsys, monkeypatch):
    """Where os.access says no (a read-only folder for anyone but root), exit 2 before running."""
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **k: False if Path(p) == ro else real(p, m, **k))
    assert main(["run", *TINY, "--out", str(ro / "out")]) == 2
    assert f"cannot write in {ro} (permission denied)" in capsys.readouterr().err
    assert list(ro.iterdir()) == []


def test_the_installed_command_prints_no_traceback(tmp_path, saved):
    """The real entry point, in its own process: one line, status 2, for a few of the table."""
    exe = Path(sys.executable).with_name("fishschool")
    damaged = _damaged_results(saved, tmp_path, lambda f: _truncate(f / "timeseries.parquet"))
    for argv in (
        ["run", "--seed", SEED_2_70],
        ["sweep", str(SHIPPED_SWEEP), "--scheduler", "foo://x"],
        ["viz", "--port", "99999"],
        ["run", "--out", "/proc/x/y"],
        ["report", damaged],
    ):
        done = subprocess.run(
            [str(exe), *argv], capture_output=True, text=True, check=False, cwd=tmp_path
        )
        assert done.returncode == 2, (argv, done.stderr)
        assert len(done.stderr.splitlines()) == 1 and done.stdout == "", (argv, done.stderr)
        assert done.stderr.startswith("fishschool: error: ")


# -- what is allowed ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["owners", "owners_v2.1", "A-b_c", "_x", "渠道", "x" * 100])
def test_plain_names_are_accepted(tmp_path, name):
    path = _write(tmp_path / "s.toml", f"name = {json.dumps(name)}\n")
    assert load(path).name == name


def test_a_relative_edge_list_is_relative_to_its_scenario_file(tmp_path, monkeypatch, capsys):
    ring = "".join(f"{i} {(i + 1) % 300}\n{i} {(i + 7) % 300}\n" for i in range(300))
    _write(tmp_path / "a" / "edges.txt", ring)
    parent = _write(
        tmp_path / "a" / "ring.toml",
        EDGELIST.format(path='"edges.txt"') + "consumers = 300\n[levers]\nowners.count = 3\n",
    )
    child = _write(tmp_path / "b" / "child.toml", 'extends = "../a/ring.toml"\n[world]\ndays = 3\n')
    elsewhere = tmp_path / "c"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    edges = str((tmp_path / "a" / "edges.txt").resolve())
    for path in (parent, child):
        assert load(path).params.graph.edgelist_path == edges
        assert main(["validate", str(path)]) == 0
    out = tmp_path / "out"
    assert main(["run", str(child), "--workers", "1", "--out", str(out), "--quiet"]) == 0
    assert (
        json.loads((out / "manifest.json").read_text())["scenarios"][0]["parameters"]["graph"][
            "edgelist_path"
        ]
        == edges
    )
    # --set: relative to the current folder
    _write(elsewhere / "mine.txt", ring)
    s = load(child, ["graph.edgelist_path=mine.txt"])
    assert s.params.graph.edgelist_path == str((elsewhere / "mine.txt").resolve())


def test_validate_accepts_the_shipped_sweep_files(capsys):
    files = sorted((shipped_dir() / "sweeps").glob("*.toml"))
    assert len(files) >= 3
    assert main(["validate", *map(str, files), "owners"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert sum(line.startswith("ok  sweep ") for line in out) == len(files)
    assert sum(line.startswith("ok  owners") for line in out) == 1


def test_a_bad_name_is_a_scenario_error():
    from sim.experiments.scenario import check_name

    with pytest.raises(ScenarioError, match=r"^f.toml: name = '\.\./x' is not a plain name"):
        check_name("../x", "f.toml")


# -- memory ---------------------------------------------------------------------------------------
def test_memory_estimate_matches_the_benchmark():
    from sim.experiments.resources import MIB, run_bytes
    from sim.world.params import Params

    at = lambda n: run_bytes(Params().with_overrides({"world.consumers": n})) / MIB  # noqa: E731
    assert 200 < at(100_000) < 300  # measured 234 MiB (make bench)
    assert 900 < at(1_000_000) < 1300  # measured 932 MiB
    assert 40_000 < at(50_000_000) < 55_000  # the issue's ~45 GB


def test_runs_side_by_side_are_capped_by_memory(monkeypatch, capsys, tmp_path):
    from sim.experiments.resources import check_memory, run_bytes
    from sim.world.params import Params

    p = Params().with_overrides({"world.consumers": 2000})
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: 3 * run_bytes(p) + 1)
    assert check_memory(p, 8) == 3 and check_memory(p, 2) == 2
    # unknown: no limit
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: None)
    assert check_memory(p, 8) == 8
    # --workers above what fits: exit 2 naming how many fit; without --workers: fewer
    room = int(1.5 * run_bytes(p))
    monkeypatch.setattr(sim.experiments.resources, "available_bytes", lambda: room)
    out = tmp_path / "r"
    args = ["run", "--consumers", "2000", "--owners", "5", "--days", "2", "--replicates", "2"]
    assert main([*args, "--workers", "2", "--out", str(out)]) == 2
    assert "at most 1 fit side by side (--workers 1)" in capsys.readouterr().err
    assert main([*args, "--out", str(out), "--quiet"]) == 0


# -- Ctrl-C ---------------------------------------------------------------------------------------
def _interrupt(
    tmp_path: Path, argv: list[str], wait_for: str, ready: Path | None = None
) -> subprocess.CompletedProcess:
    """Start the command in its own process group, wait until stderr shows ``wait_for`` (and
    ``ready`` exists, if given), then press Ctrl-C (SIGINT to the whole group, as a terminal
    does)."""
    exe = Path(sys.executable).with_name("fishschool")
    # A terminal's Ctrl-C reaches a program whose SIGINT is at its default; a shell that runs
    # the tests in the background (``make test &``) hands them SIGINT ignored, and Python
    # keeps an inherited "ignore". A handled signal is reset to its default at exec, so the
    # child starts with the default whatever this process was given.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(
            [str(exe), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
            start_new_session=True,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    err = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        line = proc.stderr.readline()
        err.append(line)
        if wait_for in line or not line:
            break
    while ready is not None and not ready.exists() and time.monotonic() - t0 < 60:
        time.sleep(0.1)  # a loaded machine may take a while to get there
    time.sleep(1.0)  # into the runs
    os.killpg(proc.pid, signal.SIGINT)
    out, rest = proc.communicate(timeout=60)
    for _ in range(50):  # the worker processes go with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("processes of the interrupted command were left running")
    return subprocess.CompletedProcess(argv, proc.returncode, out, "".join(err) + rest)


SLOW = ["--consumers", "30000", "--owners", "150", "--days", "120", "--replicates", "6"]


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "hybrid", *SLOW, "--workers", "2"],
        ["run", "hybrid", *SLOW, "--workers", "1"],
        ["compare", "owners", "streamer", *SLOW, "--workers", "2"],
    ],
    ids=["run on 2 processes", "run in-process", "compare"],
)
def test_ctrl_c_is_one_line_exit_130_and_no_output(tmp_path, argv):
    out = tmp_path / "out"
    done = _interrupt(tmp_path, [*argv, "--out", str(out)], "fishschool 0.")
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1] == "fishschool: interrupted"
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no folder, no .partial


def test_ctrl_c_during_a_sweep_keeps_what_is_done(tmp_path):
    out = tmp_path / "sw"
    argv = ["sweep", str(SHIPPED_SWEEP), "--workers", "2", "--out", str(out)]
    done = _interrupt(tmp_path, argv, "fishschool sweep", ready=out / "manifest.json")
    assert done.returncode == 130, done.stderr
    assert done.stderr.splitlines()[-1] == "fishschool: interrupted"
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    assert (out / "manifest.json").is_file()  # resumable: the next run goes on from here


def test_ctrl_c_inside_compiled_code_is_still_an_interrupt(monkeypatch, capsys):
    """numba turns a KeyboardInterrupt during its unpickling into a SystemError caused by it."""
    import sim.cli

    def interrupted_in_numba(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise SystemError("_numba_unpickle returned a result with an exception set") from err

    def broken(args):
        raise SystemError("a real error")

    monkeypatch.setitem(sim.cli.COMMANDS, "list", interrupted_in_numba)
    assert main(["list"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "fishschool: interrupted"
    monkeypatch.setitem(sim.cli.COMMANDS, "list", broken)
    with pytest.raises(SystemError, match="a real error"):
        main(["list"])
