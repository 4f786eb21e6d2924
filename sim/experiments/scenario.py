"""Scenario and sweep files: a world, a channel strategy and what is uncertain, in TOML.

One grammar serves both. A scenario file speaks the vocabulary of exploratory modelling (as in
the EMA Workbench)::

    # Question: what does a launch through owners alone achieve?
    extends = "base.toml"        # optional: start from another scenario (a path relative to
                                 # this file, or the name of a shipped scenario)
    name = "owners"              # optional: defaults to the file name
    question = "What does a launch through owners alone achieve?"
    seed = 1                     # base seed; replicate seeds derive from it (SeedSequence)
    replicates = 8

    [world]                      # size and structure: world.*, graph.*, group structure
    consumers = 100_000
    days = 90                    # simulated days, counted from day 0
    graph.mean_degree = 10

    [levers]                     # what the strategist controls
    channels.streamer = false
    owners.count = 500

    [uncertainties]              # what nobody controls
    purchase.trust = 2.0

    [events]
    streamer_removed_day = 30

A sweep file (:mod:`sim.experiments.sweep`) is a scenario file that *varies* some levers and
uncertainties: their value is a range ``[low, high]`` or a list ``{values = [...]}`` instead of
one value, and it has the sweep's own top keys (``design``, ``samples``, ``levels``,
``metrics``, ``model``). Everything else is read here, the same way for both.

Keys under ``[levers]`` and ``[uncertainties]`` are parameter names as in docs/ODD.md section 8
(``section.name``); under ``[world]`` and ``[events]`` the ``world.`` and ``events.`` prefixes
may be left out. Every parameter has one kind (:func:`sim.world.params.kind_of`: world, lever,
uncertainty or event) and must sit in the section of its kind. Anything not set keeps the
model's default.

``extends`` merges key by key: the extending file wins. ``--set key.path=value`` overrides are
applied last, with the same checks; the key path is as in the file (``levers.owners.count``,
``replicates``, ``name``) or a bare parameter name (``owners.count``, ``world.days``), placed
by its kind. ``--set name=NEW`` renames the scenario.

A ``name`` (or, without one, the file's name) is a plain name: letters, digits, ``_``, ``-``
and ``.``, not starting with ``.`` or ``-``, no path separators (:func:`check_name`); it names
the results folder, so it must not steer it elsewhere. A relative ``graph.edgelist_path`` is
relative to the folder of the file that sets it (the current folder for ``--set``) and must
name an existing edge list.

Errors are one line naming the file (or ``--set``), the key path, the value and what is
allowed. Nothing in a scenario is executed or unpickled: files are parsed with :mod:`tomllib`.
"""

from __future__ import annotations

import hashlib
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim.world.params import (
    ParameterError,
    Params,
    _did_you_mean,
    check_value,
    kind_of,
    read_toml,
)

TOP_KEYS = ("extends", "name", "question", "seed", "replicates")
SCENARIO_SECTIONS = {
    "world": "world",
    "levers": "lever",
    "uncertainties": "uncertainty",
    "events": "event",
}
_SECTION_OF_KIND = {kind: section for section, kind in SCENARIO_SECTIONS.items()}
LIMITS = {"replicates": (1, 100_000), "seed": (0, 2**63 - 1)}
DEFAULTS = {"replicates": 1, "seed": 0}


class ScenarioError(ParameterError):
    """A scenario file or override is invalid; the message names where and why."""


# A name becomes part of a path (results/NAME-TIME): letters (any script), digits, '_', '-'
# and '.', starting with a letter, digit or '_'; no separators, no '..', at most 100 characters.
NAME_PATTERN = re.compile(r"[^\W][\w.-]{0,99}")


def check_name(name: object, where: str, key: str = "name") -> str:
    """A scenario's (or sweep's) name, if it is a plain identifier; else ScenarioError naming
    ``where`` and ``key``.

    >>> check_name("owners_v2.1", "x.toml")
    'owners_v2.1'
    """
    if not isinstance(name, str):
        raise ScenarioError(f"{where}: {key} = {name!r} must be a string")
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise ScenarioError(
            f"{where}: {key} = {name!r} is not a plain name: use 1 to 100 letters, digits, "
            "'_', '-' and '.', starting with a letter, digit or '_' (no '/', no '..'); it "
            "names the results folder"
        )
    return name


def shipped_dir() -> Path:
    """The folder of shipped scenarios (``FISHSCHOOL_SCENARIOS`` overrides it)."""
    env = os.environ.get("FISHSCHOOL_SCENARIOS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "scenarios"


def resolve(name_or_path: str | Path) -> Path:
    """A scenario file from a path or the name of a shipped scenario ("owners")."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_dir() / f"{path.name}.toml"
    if path.suffix == "" and shipped.is_file():
        return shipped
    known = [p.stem for p in sorted(shipped_dir().glob("*.toml"))]
    raise ScenarioError(
        f"{name_or_path}: no such scenario file or shipped scenario"
        f"{_did_you_mean(path.stem, known)} (fishschool list shows the shipped ones)"
    )


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: its identity, its settings and the parameters they give."""

    name: str
    question: str
    path: Path | None
    text: str  # the file's own text, then each file it extends
    settings: dict[str, Any]  # dotted parameter name -> value, as set by the files and overrides
    params: Params  # the parameters of the scenario, with the base seed
    replicates: int
    seed: int
    overrides: tuple[str, ...] = field(default=())

    @property
    def days(self) -> int:
        """Simulated days (``world.days``)."""
        return self.params.world.days

    @property
    def sha256(self) -> str:
        """Hash of everything that defines the runs (texts and overrides)."""
        h = hashlib.sha256(self.text.encode())
        for o in self.overrides:
            h.update(b"\0" + o.encode())
        return h.hexdigest()

    def replicate_params(
        self, seed: int | None = None, replicates: int | None = None
    ) -> list[Params]:
        """One Params per replicate, with independent seeds derived from the base seed."""
        seeds = replicate_seeds(self.seed if seed is None else seed, replicates or self.replicates)
        return [self.params.with_overrides({"seed": s}) for s in seeds]


def replicate_seeds(seed: int, n: int) -> list[int]:
    """Independent seeds for ``n`` replicates from one base seed (numpy SeedSequence).

    The same base seed gives the same replicate seeds, so two scenarios run with one base seed
    share their worlds replicate by replicate (common random numbers).

    >>> replicate_seeds(1, 2) == replicate_seeds(1, 3)[:2]
    True
    """
    children = np.random.SeedSequence(seed).spawn(n)
    return [int(c.generate_state(1, np.uint64)[0] >> np.uint64(1)) for c in children]


# ----------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------
def load(
    name_or_path: str | Path,
    overrides: Iterable[str] = (),
    *,
    replicates: int | None = None,
    seed: int | None = None,
) -> Scenario:
    """Read, merge (``extends``), override (``--set``) and validate a scenario."""
    path = resolve(name_or_path)
    read = read_file(path)
    return build(read, overrides, replicates=replicates, seed=seed)


def default(overrides: Iterable[str] = ()) -> Scenario:
    """The model's defaults as a scenario (one replicate, seed 0), with optional overrides."""
    read = FileSettings(
        path=None,
        flat={"name": "default", "question": "The model's defaults."},
        origin={"name": "the defaults", "question": "the defaults"},
        text="# the model's defaults\n",
    )
    return build(read, overrides)


@dataclass
class FileSettings:
    """What a scenario (or sweep) file and the files it extends say, flattened to key paths
    (``levers.owners.count``, ``replicates``) with the file each key came from."""

    path: Path | None
    flat: dict[str, Any]
    origin: dict[str, str]
    text: str  # the file's own text, then each file it extends


def read_file(path: Path, extra_keys: tuple[str, ...] = ()) -> FileSettings:
    """Read ``path`` and everything it extends; ``extra_keys``: top keys allowed besides
    :data:`TOP_KEYS` (a sweep's). Values that vary (``[low, high]``, ``{values = [...]}``)
    are kept as they are: :func:`build` refuses them, a sweep takes them out first."""
    flat, origin, text = _read_chain(path, (), extra_keys)
    return FileSettings(path, flat, origin, text)


def build(
    read: FileSettings,
    overrides: Iterable[str] = (),
    *,
    replicates: int | None = None,
    seed: int | None = None,
) -> Scenario:
    """A validated :class:`Scenario` from a file's settings, ``--set`` overrides and the
    ``--replicates``/``--seed`` options (applied in that order)."""
    flat, origin = dict(read.flat), dict(read.origin)
    overrides = tuple(overrides)
    for item in overrides:
        key, value = parse_override(item)
        flat[key] = value
        origin[key] = f"--set {item}"
    if replicates is not None:
        flat["replicates"], origin["replicates"] = replicates, "--replicates"
    if seed is not None:
        flat["seed"], origin["seed"] = seed, "--seed"
    where = str(read.path) if read.path else "scenario"
    name = flat.get("name", read.path.stem if read.path else "default")
    for key in ("name", "question"):
        value = flat.get(key, "")
        if not isinstance(value, str):
            raise ScenarioError(f"{origin.get(key, where)}: {key} = {value!r} must be a string")
    if "name" in flat:
        check_name(name, origin["name"])
    else:
        check_name(name, where, "name (from the file name; set name = ... in the file)")
    return _build(
        flat,
        origin,
        name=name,
        question=flat.get("question", ""),
        path=read.path,
        texts=read.text,
        overrides=overrides,
    )


def _parse(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except ParameterError as err:
        raise ScenarioError(str(err)) from None
    except OSError as err:  # a folder, no permission, ...
        raise ScenarioError(f"{path}: cannot be read ({err.strerror or err})") from None


def _read_chain(
    path: Path, chain: tuple[Path, ...], extra_keys: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, str], str]:
    """Flattened settings of a file and everything it extends, with each key's file."""
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain, real))
        raise ScenarioError(f"{path}: extends = cycle ({cycle})")
    raw = _parse(path)
    flat, origin = _flatten(raw, str(path), extra_keys)
    text = path.read_text(encoding="utf-8")
    _resolve_edgelist(flat, path.parent)
    parent = flat.pop("extends", None)
    origin.pop("extends", None)
    if parent is None:
        return flat, origin, text
    parent_path = _extended(path, parent)
    base, base_origin, base_text = _read_chain(parent_path, (*chain, real), extra_keys)
    base.pop("name", None)  # a name belongs to its own file
    base.update(flat)
    base_origin.update(origin)
    return base, base_origin, f"{text}\n# --- extends {parent} ---\n{base_text}"


def _extended(path: Path, parent: object) -> Path:
    """The file ``extends = parent`` names: a path relative to ``path``'s folder, else the
    name of a shipped scenario."""
    if not isinstance(parent, str):
        raise ScenarioError(f"{path}: extends = {parent!r} must be a file name (a string)")
    candidate = path.parent / parent
    if candidate.is_file():
        return candidate
    shipped = shipped_dir() / f"{parent}.toml"
    if Path(parent).suffix == "" and "/" not in parent and shipped.is_file():
        return shipped
    if Path(parent).suffix:
        raise ScenarioError(f"{path}: extends = {parent!r}: file not found ({candidate})")
    known = [p.stem for p in sorted(shipped_dir().glob("*.toml"))]
    raise ScenarioError(
        f"{path}: extends = {parent!r}: file not found ({candidate}) and no shipped scenario "
        f"of that name{_did_you_mean(parent, known)}"
    )


def is_varied(value: Any) -> bool:
    """A value that varies in a sweep: ``[low, high]`` or ``{values = [...]}``."""
    return isinstance(value, list) or (isinstance(value, Mapping) and "values" in value)


def _flatten(
    raw: Mapping[str, Any], where: str, extra_keys: tuple[str, ...] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    flat: dict[str, Any] = {}
    top = (*TOP_KEYS, *extra_keys)
    for key, value in raw.items():
        if key in top:
            flat[key] = value
        elif key in SCENARIO_SECTIONS:
            if not isinstance(value, Mapping):
                raise ScenarioError(
                    f"{where}: [{key}] must be a table of parameters, got {value!r}"
                )
            for sub, v in _walk(value):
                flat[f"{key}.{sub}"] = v
        else:
            allowed = [*top, *SCENARIO_SECTIONS]
            raise ScenarioError(
                f"{where}: unknown key '{key}'{_did_you_mean(key, allowed)}; allowed at the top: "
                f"{', '.join(top)} and the sections [{'], ['.join(SCENARIO_SECTIONS)}]"
            )
    return flat, {k: where for k in flat}


def _walk(table: Mapping[str, Any], prefix: str = ""):
    """(dotted key, value) of a nested table; a varied value (:func:`is_varied`) is a leaf."""
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and not is_varied(value):
            yield from _walk(value, f"{path}.")
        else:
            yield path, value


def parse_override(item: str) -> tuple[str, Any]:
    """``key.path=value`` as (key path, value): the value is read as a TOML value (a bare
    word is a string); a bare parameter name is placed under its kind's section.

    >>> parse_override("owners.count=20")
    ('levers.owners.count', 20)
    >>> parse_override("world.days=30")
    ('world.days', 30)
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ScenarioError(f"--set {item}: expected key.path=value")
    if text.strip().lower() in ("none", "null"):
        value = None  # TOML has no null: an event switched off, for instance
    else:
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
    first = key.split(".")[0]
    if first in TOP_KEYS or first in SCENARIO_SECTIONS:
        return key, value
    try:  # a bare parameter name: place it by its kind
        kind = kind_of(key)
    except ParameterError as err:
        raise ScenarioError(f"--set {item}: {err}") from None
    return f"{_SECTION_OF_KIND[kind]}.{key}", value


def parameter_name(key: str, where: str) -> str:
    """The parameter a key path names (``levers.owners.count`` -> ``owners.count``;
    ``world.consumers`` -> ``world.consumers``), checked to sit in its kind's section.

    Under [world] and [events] a bare name is short for ``world.name`` / ``events.name``.
    """
    section, _, rest = key.partition(".")
    if section not in SCENARIO_SECTIONS or not rest:
        allowed = [*TOP_KEYS, *SCENARIO_SECTIONS]
        raise ScenarioError(f"{where}: unknown key '{key}'{_did_you_mean(section, allowed)}")
    dotted = f"{section}.{rest}" if section in ("world", "events") and "." not in rest else rest
    try:
        kind = kind_of(dotted)
    except ParameterError as err:
        raise ScenarioError(f"{where}: {key}: {err}") from None
    if kind != SCENARIO_SECTIONS[section]:
        raise ScenarioError(
            f"{where}: {key}: {dotted} is {_a(kind)}, not {_a(SCENARIO_SECTIONS[section])}: "
            f"move it to [{_SECTION_OF_KIND[kind]}]"
        )
    return dotted


def _a(kind: str) -> str:
    """A parameter kind with its article: 'a lever', 'an uncertainty', 'a world parameter'."""
    noun = f"{kind} parameter" if kind in ("world", "event") else kind
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


EDGELIST_KEY = "world.graph.edgelist_path"


def _resolve_edgelist(flat: dict[str, Any], folder: Path) -> None:
    """A relative ``graph.edgelist_path`` is relative to the folder of the file that sets it
    (the current folder for ``--set``); it is kept as an absolute path."""
    value = flat.get(EDGELIST_KEY)
    if isinstance(value, str) and value and not Path(value).is_absolute():
        flat[EDGELIST_KEY] = str((folder / value).resolve())


def _check_edgelist(path: str, where: str, key: str) -> None:
    """The edge list exists and looks like one (its first lines: two node ids each)."""
    file = Path(path)
    if not file.is_file():
        what = "is a folder" if file.is_dir() else "file not found"
        raise ScenarioError(f"{where}: {key} = {path!r}: {what}")
    try:
        with file.open("rb") as fh:
            head = fh.read(65536)
        text = head.decode("utf-8", errors="strict" if len(head) < 65536 else "ignore")
    except OSError as err:
        raise ScenarioError(f"{where}: {key} = {path!r}: cannot be read ({err.strerror})") from None
    except UnicodeDecodeError:
        raise ScenarioError(
            f"{where}: {key} = {path!r}: not an edge list (not a text file)"
        ) from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()[:-1] or text.splitlines()]
    lines = [ln for ln in lines if ln][:100]
    if not lines:
        raise ScenarioError(f"{where}: {key} = {path!r}: the edge list has no edges")
    for ln in lines:
        if len(ln.replace(",", " ").split()) < 2:
            raise ScenarioError(
                f"{where}: {key} = {path!r}: not an edge list (a line needs two node ids, "
                f"got {ln[:40]!r})"
            )


def _build(
    flat: dict[str, Any],
    origin: dict[str, str],
    *,
    name: str,
    question: str,
    path: Path | None,
    texts: str,
    overrides: tuple[str, ...],
) -> Scenario:
    top = dict(DEFAULTS)
    settings: dict[str, Any] = {}
    _resolve_edgelist(flat, Path.cwd())  # set by --set (a file's own is resolved already)
    for key, value in flat.items():
        where = origin.get(key, "scenario")
        if key in ("name", "question", "extends"):
            continue
        if key in LIMITS:
            lo, hi = LIMITS[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ScenarioError(f"{where}: {key} = {value!r} has the wrong type: expected int")
            if not lo <= value <= hi:
                raise ScenarioError(
                    f"{where}: {key} = {value!r} is outside the allowed range [{lo}, {hi}]"
                )
            top[key] = value
            continue
        dotted = parameter_name(key, where)
        if is_varied(value):
            raise ScenarioError(
                f"{where}: {key} = {value!r}: a range or list of values varies a parameter, "
                "which a sweep file does (fishschool sweep); a scenario sets one value"
            )
        try:
            settings[dotted] = check_value(dotted, value, label=key)
        except ParameterError as err:
            raise ScenarioError(f"{where}: {err}") from None
    days = settings.get("world.days", Params().world.days)
    for key, value in settings.items():
        if key.endswith("_day") and key.startswith("events.") and value is not None:
            if value >= days:
                raise ScenarioError(
                    f"{origin.get(_label_of(key, flat), 'scenario')}: {key} = {value} is not "
                    f"within the simulated days (days 0 to {days - 1}; world.days = {days})"
                )
    try:
        params = Params().with_overrides({**settings, "seed": top["seed"]})
    except ParameterError as err:
        where = str(path) if path else "scenario"
        raise ScenarioError(f"{where}: {err}") from None
    if params.graph.topology == "edgelist":
        label = _label_of("graph.edgelist_path", flat)
        _check_edgelist(params.graph.edgelist_path, origin.get(label, "scenario"), label)
    return Scenario(
        name=name,
        question=question,
        path=path,
        text=texts,
        settings=settings,
        params=params,
        replicates=top["replicates"],
        seed=top["seed"],
        overrides=overrides,
    )


def _label_of(dotted: str, flat: Mapping[str, Any]) -> str:
    """The key under which a parameter was set (for messages)."""
    for key in flat:
        section, _, rest = key.partition(".")
        if section in SCENARIO_SECTIONS and rest in (dotted, dotted.partition(".")[2]):
            if parameter_name(key, "scenario") == dotted:
                return key
    return dotted


def shipped() -> list[Scenario]:
    """Every shipped scenario, loaded and validated."""
    return [load(p) for p in sorted(shipped_dir().glob("*.toml"))]
