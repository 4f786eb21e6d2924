"""Scenario files: a world, a channel strategy and what is uncertain, in TOML.

A scenario file speaks the vocabulary of exploratory modelling (as in the EMA Workbench)::

    # Question: what does a launch through owners alone achieve?
    extends = "base.toml"        # optional: start from another scenario (path relative to this)
    name = "owners"              # optional: defaults to the file name
    question = "What does a launch through owners alone achieve?"
    seed = 1                     # base seed; replicate seeds derive from it (SeedSequence)
    replicates = 8
    horizon = 90                 # days

    [world]                      # size and structure: world.*, graph.*, group structure
    consumers = 100_000
    graph.mean_degree = 10

    [levers]                     # what the strategist controls
    channels.streamer = false
    owners.commission = 0.15

    [uncertainties]              # what nobody controls
    purchase.trust = 2.0

    [events]
    streamer_removed_day = 30

Keys under ``[levers]`` and ``[uncertainties]`` are parameter names as in docs/ODD.md section 8
(``section.name``); under ``[world]`` and ``[events]`` the ``world.`` and ``events.`` prefixes
may be left out. Every parameter has one kind (:func:`sim.world.params.kind_of`) and must sit in the
section of its kind. Anything not set keeps the model's default.

``extends`` merges key by key: the extending file wins. ``--set key.path=value`` overrides are
applied last, with the same checks; the key path is as in the file (``levers.owners.commission``,
``replicates``) or a bare parameter name (``owners.commission``), placed by its kind.

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

TOP_KEYS = ("extends", "name", "question", "seed", "replicates", "horizon")
SCENARIO_SECTIONS = {
    "world": "world",
    "levers": "lever",
    "uncertainties": "uncertainty",
    "events": "event",
}
_SECTION_OF_KIND = {kind: section for section, kind in SCENARIO_SECTIONS.items()}
_LIMITS = {"replicates": (1, 100_000), "horizon": (1, 100_000), "seed": (0, 2**63 - 1)}
DEFAULTS = {"replicates": 1, "horizon": Params().world.days, "seed": 0}


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
    def horizon(self) -> int:
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
    flat, origin, texts = _read_chain(path, ())
    own = _parse(path)
    overrides = tuple(overrides)
    for item in overrides:
        key, value = _parse_override(item)
        flat[key] = value
        origin[key] = f"--set {item}"
    if replicates is not None:
        flat["replicates"], origin["replicates"] = replicates, "--replicates"
    if seed is not None:
        flat["seed"], origin["seed"] = seed, "--seed"
    name = own.get("name", path.stem)
    question = flat.get("question", "")
    for key in ("name", "question"):
        value = own.get(key, flat.get(key, ""))
        if not isinstance(value, str):
            raise ScenarioError(f"{origin[key]}: {key} = {value!r} must be a string")
    if "name" in own:
        check_name(name, str(path))
    else:
        check_name(name, str(path), "name (from the file name; set name = ... in the file)")
    return _build(
        flat, origin, name=name, question=question, path=path, texts=texts, overrides=overrides
    )


def default(overrides: Iterable[str] = ()) -> Scenario:
    """The model's defaults as a scenario (one replicate, seed 0), with optional overrides."""
    flat: dict[str, Any] = {}
    origin: dict[str, str] = {}
    overrides = tuple(overrides)
    for item in overrides:
        key, value = _parse_override(item)
        flat[key], origin[key] = value, f"--set {item}"
    return _build(
        flat,
        origin,
        name="default",
        question="The model's defaults.",
        path=None,
        texts="# the model's defaults\n",
        overrides=overrides,
    )


def _parse(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except ParameterError as err:
        raise ScenarioError(str(err)) from None
    except OSError as err:  # a folder, no permission, ...
        raise ScenarioError(f"{path}: cannot be read ({err.strerror or err})") from None


def _read_chain(path: Path, chain: tuple[Path, ...]) -> tuple[dict[str, Any], dict[str, str], str]:
    """Flattened settings of a file and everything it extends, with each key's file."""
    real = path.resolve()
    if real in chain:
        cycle = " -> ".join(str(p) for p in (*chain, real))
        raise ScenarioError(f"{path}: extends = cycle ({cycle})")
    raw = _parse(path)
    flat, origin = _flatten(raw, str(path))
    text = path.read_text(encoding="utf-8")
    _resolve_edgelist(flat, path.parent)
    parent = flat.pop("extends", None)
    origin.pop("extends", None)
    if parent is None:
        return flat, origin, text
    if not isinstance(parent, str):
        raise ScenarioError(f"{path}: extends = {parent!r} must be a file name (a string)")
    parent_path = path.parent / parent
    if not parent_path.is_file():
        raise ScenarioError(f"{path}: extends = {parent!r}: file not found ({parent_path})")
    base, base_origin, base_text = _read_chain(parent_path, (*chain, real))
    base.pop("name", None)  # a name belongs to its own file
    base.update(flat)
    base_origin.update(origin)
    return base, base_origin, f"{text}\n# --- extends {parent} ---\n{base_text}"


def _flatten(raw: Mapping[str, Any], where: str) -> tuple[dict[str, Any], dict[str, str]]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in TOP_KEYS:
            flat[key] = value
        elif key in SCENARIO_SECTIONS:
            if not isinstance(value, Mapping):
                raise ScenarioError(
                    f"{where}: [{key}] must be a table of parameters, got {value!r}"
                )
            for sub, v in _walk(value):
                flat[f"{key}.{sub}"] = v
        else:
            allowed = [*TOP_KEYS, *SCENARIO_SECTIONS]
            raise ScenarioError(
                f"{where}: unknown key '{key}'{_did_you_mean(key, allowed)}; allowed at the top: "
                f"{', '.join(TOP_KEYS)} and the sections [{'], ['.join(SCENARIO_SECTIONS)}]"
            )
    return flat, {k: where for k in flat}


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


def _walk(table: Mapping[str, Any], prefix: str = ""):
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _walk(value, f"{path}.")
        else:
            yield path, value


def _parse_override(item: str) -> tuple[str, Any]:
    """``key.path=value``: the value is read as a TOML value (a bare word is a string)."""
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
    if key == "world.days":
        return "horizon", value
    if first == "world" and key.count(".") == 1:
        # world.owners is a parameter name as well as a key path under [world]: a parameter
        # of another kind is placed by its kind (world.owners -> levers.world.owners).
        try:
            kind = kind_of(key)
        except ParameterError:
            kind = "world"
        if kind != "world":
            return f"{_SECTION_OF_KIND[kind]}.{key}", value
    if first in TOP_KEYS or first in SCENARIO_SECTIONS:
        return key, value
    try:  # a bare parameter name: place it by its kind
        kind = kind_of(key)
    except ParameterError as err:
        raise ScenarioError(f"--set {item}: {err}") from None
    if key == "world.days":
        return "horizon", value
    section = _SECTION_OF_KIND[kind]
    return f"{section}.{key}", value


def _parameter_name(section: str, key: str) -> str:
    """The parameter a key under a scenario section names: under [world] and [events] a bare
    name is short for ``world.name`` / ``events.name``; a dotted key is a full name."""
    if section in ("world", "events") and "." not in key:
        return f"{section}.{key}"
    return key


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
        if key in _LIMITS:
            lo, hi = _LIMITS[key]
            if not isinstance(value, int) or isinstance(value, bool):
                raise ScenarioError(f"{where}: {key} = {value!r} has the wrong type: expected int")
            if not lo <= value <= hi:
                raise ScenarioError(
                    f"{where}: {key} = {value!r} is outside the allowed range [{lo}, {hi}]"
                )
            top[key] = value
            continue
        section, _, rest = key.partition(".")
        if section not in SCENARIO_SECTIONS or not rest:
            allowed = [*TOP_KEYS, *SCENARIO_SECTIONS]
            raise ScenarioError(f"{where}: unknown key '{key}'{_did_you_mean(section, allowed)}")
        dotted = _parameter_name(section, rest)
        try:
            kind = kind_of(dotted)
        except ParameterError as err:
            raise ScenarioError(f"{where}: {key}: {err}") from None
        if dotted == "world.days":
            raise ScenarioError(f"{where}: {key}: set the number of days with 'horizon' at the top")
        if kind != SCENARIO_SECTIONS[section]:
            raise ScenarioError(
                f"{where}: {key}: {dotted} is {'an' if kind[0] in 'aeiou' else 'a'} {kind}, "
                f"not {'an' if SCENARIO_SECTIONS[section][0] in 'aeiou' else 'a'} "
                f"{SCENARIO_SECTIONS[section]}: move it to [{_SECTION_OF_KIND[kind]}]"
            )
        try:
            settings[dotted] = check_value(dotted, value, label=key)
        except ParameterError as err:
            raise ScenarioError(f"{where}: {err}") from None
    settings["world.days"] = top["horizon"]
    for key, value in settings.items():
        if key.endswith("_day") and key.startswith("events.") and value is not None:
            if value >= top["horizon"]:
                raise ScenarioError(
                    f"{origin.get(_label_of(key, flat), 'scenario')}: {key} = {value} is not "
                    f"within the horizon (days 0 to {top['horizon'] - 1})"
                )
    try:
        params = Params().with_overrides({**settings, "seed": top["seed"]})
    except ParameterError as err:
        where = str(path) if path else "scenario"
        raise ScenarioError(f"{where}: {err}") from None
    if params.graph.kind == "edgelist":
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
        if section in SCENARIO_SECTIONS and _parameter_name(section, rest) == dotted:
            return key
    return dotted


def shipped() -> list[Scenario]:
    """Every shipped scenario, loaded and validated."""
    return [load(p) for p in sorted(shipped_dir().glob("*.toml"))]
