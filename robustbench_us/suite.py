"""Suites: TOML files naming the grid to run, validated before any work starts."""

from __future__ import annotations

import dataclasses
import difflib
import enum
import inspect
import math
import tomllib
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePath
from typing import Any

from robustbench_us.errors import RobustBenchError, SuiteError
from robustbench_us.plugins import Registry
from robustbench_us.specs import Kind

REGIONS = ("all", "inside", "outside")
LABEL_SOURCES = ("true", "predicted")
QUANTIZE = ("none", "uint8")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DatasetEntry:
    """One dataset of a suite and how to split it."""

    name: str
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    split_seed: int = 0
    part: str = "test"


@dataclass(frozen=True)
class ModelEntry:
    """One model of a suite: load a checkpoint, or train on the dataset's train split."""

    name: str
    input_size: int | None = None
    checkpoint: str | None = None
    sha256: str | None = None
    train: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # a display name, when one architecture appears twice (other checkpoints)

    @property
    def key(self) -> str:
        """How records and checkpoints name this entry (the label or name, plus its input size)."""
        shown = self.label or self.name
        return shown if self.input_size is None else f"{shown}@{self.input_size}"


@dataclass(frozen=True)
class ExplainerEntry:
    """One explainer of a suite."""

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None  # a display name, when one explainer appears twice with other options

    @property
    def key(self) -> str:
        """How records and maps name this entry: its label, else its name."""
        return self.label or self.name


@dataclass(frozen=True)
class AttackEntry:
    """One attack of a suite, swept over ``eps`` (in [0, 1] pixel units)."""

    name: str
    eps: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)
    region: str = "all"
    label: str | None = None  # a display name, when one attack appears twice with other options
    # Which label the attack is given as ``y``: the true one, or the model's own clean
    # prediction (the study: "y is the predicted label linked to x").
    labels: str = "true"

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Threshold:
    """A CI gate: ``metric op value`` for the cells it selects (checked by :mod:`robustbench_us.gates`)."""

    metric: str
    op: str
    value: float
    where: dict[str, Any] = field(default_factory=dict)


# The comparisons a threshold may use (gates.py maps each to its operator).
THRESHOLD_OPS = (">=", "<=", ">", "<")
# Keys a threshold's ``where`` table may select on: the cell's configuration as records store it.
WHERE_KEYS = ("dataset", "model", "explainer", "attack", "eps", "eps_grey", "region", "part", "split_seed",
              "image_size", "n_images", "seed", "model_name", "attack_name")


def check_where(threshold: Threshold) -> str | None:
    """Why a threshold's ``op``, ``value`` or ``where`` table cannot be used, or None.

    Pure validation, so the suite loader refuses a bad threshold before any work and
    :func:`robustbench_us.gates.evaluate_thresholds` reports one built by hand.
    """
    if threshold.op not in THRESHOLD_OPS:
        return f"op {threshold.op!r} is not one of {', '.join(THRESHOLD_OPS)}"
    value = threshold.value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return f"value {value!r} is not a finite number; every comparison with it would fail"
    for key, wanted in threshold.where.items():
        if key not in WHERE_KEYS:
            close = difflib.get_close_matches(key, WHERE_KEYS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            return f"where key {key!r} is not a cell setting. Allowed: {', '.join(WHERE_KEYS)}.{hint}"
        values = wanted if isinstance(wanted, list) else [wanted]
        if not values or any(isinstance(v, (dict, list)) for v in values):
            return f"where.{key} = {wanted!r}: give a value or a non-empty list of values"
    return None


@dataclass(frozen=True)
class Suite:
    """A whole benchmark: datasets × models × explainers × attacks (× ε)."""

    name: str
    path: Path | None
    datasets: tuple[DatasetEntry, ...]
    models: tuple[ModelEntry, ...]
    explainers: tuple[ExplainerEntry, ...]
    attacks: tuple[AttackEntry, ...]
    description: str = ""
    seed: int = 0
    n_images: int = 0  # 0: every image of the chosen split part
    batch_size: int = 32
    device: str = "auto"
    thresholds: tuple[Threshold, ...] = ()
    notes: str = ""
    cell_timeout: float | None = None  # seconds a plugin may take for one attack × ε
    figures: bool | tuple[float, ...] = True  # or the ε values, in grey levels, whose cells get figures
    # "uint8": clean and adversarial images are rounded to the 8-bit grid a stored PNG or DICOM
    # holds, so a budget of k grey levels is k whole steps of 1/255; "none" keeps float32 images.
    quantize: str = "none"

    def figures_at(self, eps: float) -> bool:
        """Whether a cell at ``eps`` (in [0, 1] units) writes its figures."""
        if isinstance(self.figures, bool):
            return self.figures
        return any(math.isclose(eps * 255.0, grey, rel_tol=1e-6, abs_tol=1e-6) for grey in self.figures)


# key -> (accepted types, description used in messages)
_NUMBER = (int, float)
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "suite": {"name": ((str,), "a kebab-case name"), "description": ((str,), "text"),
              "seed": ((int,), "an integer from 0 to 2**32 - 1"), "n_images": ((int,), "an integer ≥ 0 (0 = all)"),
              "batch_size": ((int,), "an integer ≥ 1"), "device": ((str,), f"one of {', '.join(DEVICES)}"),
              "notes": ((str,), "text shown on the leaderboard"),
              "cell_timeout": (_NUMBER, "seconds (a number > 0)"),
              "figures": ((bool, list), ("true, false, or a list of ε in grey levels (write the study's "
                                         "panels per cell, or only for cells at those ε)")),
              "quantize": ((str,), f"one of {', '.join(QUANTIZE)} (round images to the 8-bit grid)")},
    "datasets": {"name": ((str,), "a dataset name"), "root": ((str,), "a folder path"),
                 "options": ((dict,), "a table"), "split_seed": ((int,), "an integer from 0 to 2**32 - 1"),
                 "part": ((str,), "'train', 'val' or 'test'")},
    "models": {"name": ((str,), "a model name"), "input_size": ((int,), "an integer (pixels)"),
               "checkpoint": ((str,), "a path to a .safetensors file"), "sha256": ((str,), "a hex digest"),
               "train": ((dict,), "a table of training settings"), "options": ((dict,), "a table"),
               "label": ((str,), "a display name")},
    "explainers": {"name": ((str,), "an explainer name"), "options": ((dict,), "a table"),
                   "label": ((str,), "a display name")},
    "attacks": {"name": ((str,), "an attack name"), "eps": ((int, float, list), "a number or a list of numbers"),
                "eps_grey": ((int, float, list), "a number or list, in grey levels (ε×255)"),
                "options": ((dict,), "a table"), "region": ((str,), f"one of {', '.join(REGIONS)}"),
                "label": ((str,), "a display name"),
                "labels": ((str,), f"one of {', '.join(LABEL_SOURCES)} (the y an attack is given)")},
    "thresholds": {"metric": ((str,), "a metric name"), "op": ((str,), f"one of {', '.join(THRESHOLD_OPS)}"),
                   "value": (_NUMBER, "a finite number"), "where": ((dict,), "a table selecting cells")},
}
_TOP = {"suite": dict, "datasets": list, "models": list, "explainers": list, "attacks": list, "thresholds": list,
        "scales": dict}
_SCHEMA["scales"] = {
    "input_size": ((int,), "an integer (pixels), applied to every model"),
    "n_images": ((int,), "an integer ≥ 0"), "batch_size": ((int,), "an integer ≥ 1"),
    "train": ((dict,), "a table merged into every model's train settings"),
    "attacks": ((dict,), "a table per attack (its label or name): options merged, eps or eps_grey replaced"),
    "notes": ((str,), "text shown on the leaderboard (why this scale, what it changes)"),
}
_SCHEMA["scale_attack"] = {
    "options": ((dict,), "a table merged into the attack's options"),
    "eps": ((int, float, list), "a number or a list of numbers, replacing the attack's ε"),
    "eps_grey": ((int, float, list), "a number or list in grey levels (ε×255), replacing the attack's ε"),
}


def apply_scale(data: dict[str, Any], scale: str, source: str) -> dict[str, Any]:
    """The suite document with ``[scales.<scale>]`` applied; the suite's name gains ``-<scale>``.

    A scale is how one suite runs at stated, reduced settings (e.g. on a CPU) while the
    full-scale run stays the same file without the flag.
    """
    scales = data.get("scales") or {}
    if not isinstance(scales, dict) or scale not in scales:
        raise SuiteError(f"{source}: scale {scale!r} is not defined. Defined scales: "
                         f"{', '.join(sorted(scales)) if isinstance(scales, dict) and scales else '(none)'}. "
                         "Add a [scales.<name>] table or drop --scale.")
    table = _check_table(source, f"scales.{scale}", scales[scale], "scales")
    out = {k: v for k, v in data.items() if k != "scales"}
    head = dict(out.get("suite", {}))
    base_name = head.get("name") or (Path(source).stem if source != "<suite>" else "suite")
    head["name"] = f"{base_name}-{scale}"
    for key in ("n_images", "batch_size"):
        if key in table:
            head[key] = table[key]
    if "notes" in table:
        head["notes"] = table["notes"]
    out["suite"] = head
    models = []
    for model in out.get("models", []):
        if isinstance(model, dict):  # anything else is reported by parse_suite
            model = dict(model)
            if "input_size" in table:
                model["input_size"] = table["input_size"]
            if "train" in table and isinstance(model.get("train"), dict):
                model["train"] = {**model["train"], **table["train"]}
        models.append(model)
    out["models"] = models
    if "attacks" in table:
        out["attacks"] = _scale_attacks(source, f"scales.{scale}.attacks", table["attacks"], out.get("attacks", []))
    return out


def _scale_attacks(source: str, where: str, changes: dict[str, Any], attacks: list[Any]) -> list[Any]:
    """The suite's attacks with a scale's per-attack changes applied (keyed by label, else by name)."""
    def key_of(attack: Any) -> Any:
        return attack.get("label") or attack.get("name") if isinstance(attack, dict) else None

    keys = [key_of(attack) for attack in attacks]
    out = list(attacks)
    for key, change in changes.items():
        _check_table(source, f"{where}.{key}", change, "scale_attack")
        if key not in keys:
            known = ", ".join(repr(k) for k in keys if k) or "(none)"
            raise _fail(source, f"{where}.{key}", f"no attack of the suite is labelled or named {key!r}. "
                                                  f"Its attacks: {known}.")
        if "eps" in change and "eps_grey" in change:
            raise _fail(source, f"{where}.{key}", "give either eps (in [0, 1] units) or eps_grey (grey levels), "
                                                  "not both.")
        for i, attack in enumerate(out):
            if keys[i] != key:
                continue
            attack = {k: v for k, v in attack.items() if not (k in ("eps", "eps_grey") and
                                                              ("eps" in change or "eps_grey" in change))}
            if "options" in change:
                attack["options"] = {**(attack.get("options") or {}), **change["options"]}
            attack |= {k: v for k, v in change.items() if k in ("eps", "eps_grey")}
            out[i] = attack
    return out


# Options the runner passes to a factory itself: giving one in ``options`` too would fail every cell
# ("got multiple values for keyword argument"), so the loader says which suite key sets it instead.
_SET_BY_RUNNER = {
    "datasets": {"root": "the entry's root key", "image_size": "the model's input_size", "seed": "suite.seed"},
    "models": {"input_size": "the entry's input_size key"},
    "explainers": {},
    "attacks": {"eps": "the entry's eps or eps_grey key"},
}


def _parameter_types(factory: Callable[..., Any]) -> dict[str, Any]:
    """Each keyword parameter's type, read from the factory's annotations (or its default's type).

    Annotations are often strings (``from __future__ import annotations``); when they
    cannot be evaluated, a parameter's default tells its type; with neither it is absent
    and its values are not checked.
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return {}
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        hints = typing.get_type_hints(target)
    except (NameError, TypeError, AttributeError, SyntaxError):  # a name only imported for type checkers, ...
        hints = {}
    out: dict[str, Any] = {}
    for name, parameter in parameters.items():
        if parameter.kind not in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            continue
        if name in hints:
            out[name] = hints[name]
        elif type(parameter.default) in (bool, int, float, str):
            # No usable annotation: an int default may still take a float, so only the kind is checked.
            out[name] = float if type(parameter.default) is int else type(parameter.default)
    return out


def _conforms(value: Any, hint: Any) -> bool | None:
    """Whether ``value`` (as TOML gives it) fits type ``hint``; None when that cannot be decided."""
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin is typing.Union or origin is types.UnionType:
        verdicts = [_conforms(value, arg) for arg in typing.get_args(hint)]
        return True if True in verdicts else None if None in verdicts else False
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    container = origin or hint
    if container in (list, tuple):  # TOML arrays are lists; a factory taking a tuple gets one alike
        return isinstance(value, (list, tuple))
    if not isinstance(container, type):
        return None  # a TypeVar, a string annotation left unevaluated, ...
    if issubclass(container, enum.Enum):  # TOML gives a member's value (or name) as text or a number
        return any(value == m.value for m in container) or (isinstance(value, str) and value in container.__members__)
    if issubclass(container, PurePath) and isinstance(value, str):
        return True
    try:
        return isinstance(value, container)
    except TypeError:  # e.g. a Protocol that is not runtime-checkable
        return None


def _type_text(hint: Any) -> str:
    """A type as a suite author reads it: ``an integer``, ``a number``, ``true or false``, ..."""
    if typing.get_origin(hint) is typing.Union or typing.get_origin(hint) is types.UnionType:
        parts = [_type_text(arg) for arg in typing.get_args(hint) if arg is not type(None)]
        return " or ".join(dict.fromkeys(parts))
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(hint))
    words = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             tuple: "a list", dict: "a table"}
    container = typing.get_origin(hint) or hint
    if container in words:
        return words[container]
    if isinstance(container, type) and issubclass(container, enum.Enum):
        return "one of " + ", ".join(repr(m.value) for m in container)
    if isinstance(container, type) and issubclass(container, PurePath):
        return "a path"
    return f"a {getattr(container, '__name__', str(container))}"


def _option_problem(factory: Callable[..., Any], options: dict[str, Any], hidden: set[str]) -> str | None:
    """Why ``factory`` cannot take ``options`` (an unknown name, a value of the wrong type), or None.

    Read from the factory's signature, so a typo or a value of the wrong type fails
    when the suite is read rather than as a failed cell; a factory taking ``**kwargs``
    accepts any other name. ``hidden`` are parameters the runner fills, left out of the
    list of options offered.
    """
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    allowed = [name for name, p in parameters.items()
               if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        unknown = [key for key in options if key not in allowed]
        if unknown:
            close = difflib.get_close_matches(unknown[0], allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            offered = [n for n in allowed if n != "variant" and n not in hidden]
            return f"unknown option {unknown[0]!r}.{hint} It takes: {', '.join(offered) or '(no options)'}."
    hints = _parameter_types(factory)
    for key, value in options.items():
        if isinstance(value, float) and math.isnan(value):
            return f"option {key!r} is nan, which no setting can mean. Give a number."
        if key in hints and _conforms(value, hints[key]) is False:
            return (f"option {key!r} takes {_type_text(hints[key])}, got {type(value).__name__} {value!r}. "
                    f"Change {key} to {_type_text(hints[key])}.")
    return None


def _fail(source: str, where: str, message: str) -> SuiteError:
    return SuiteError(f"{source}: {where}: {message}")


def _check_table(source: str, where: str, table: Any, section: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(source, where, f"expected a table, got {type(table).__name__}. Write it as [[{section}]].")
    schema = _SCHEMA[section]
    for key, value in table.items():
        if key not in schema:
            close = difflib.get_close_matches(key, schema, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _fail(source, f"{where}.{key}", f"unknown key. Allowed: {', '.join(schema)}.{hint}")
        types_, text = schema[key]
        ok = isinstance(value, types_) and not (isinstance(value, bool) and bool not in types_)
        if not ok:
            raise _fail(source, f"{where}.{key}", f"expected {text}, got {type(value).__name__} {value!r}.")
    return table


# Seeds feed NumPy's and PyTorch's generators, which take 0 .. 2**32 - 1 alike; an attack batch is
# seeded with seed × 100003 + its first image index, which then stays far inside a signed 64-bit integer.
MAX_SEED = 2**32 - 1


def _check_seed(source: str, where: str, value: int) -> int:
    """``value`` when it is a seed every generator the project seeds accepts (see :data:`MAX_SEED`)."""
    if not 0 <= value <= MAX_SEED:
        raise _fail(source, where, f"{value} is not a usable seed: give an integer from 0 to {MAX_SEED} "
                                   "(2**32 - 1; the random generators take that range, and attack seeds "
                                   "seed × 100003 + image index must fit in 64 bits).")
    return value


def _eps_values(source: str, where: str, table: dict[str, Any]) -> tuple[float, ...]:
    """An attack's ε list in [0, 1] units, each value once."""
    if "eps" in table and "eps_grey" in table:
        raise _fail(source, where, "give either eps (in [0, 1] units) or eps_grey (grey levels), not both.")
    key = "eps" if "eps" in table else "eps_grey" if "eps_grey" in table else None
    if key is None:
        return ()
    raw = table[key] if isinstance(table[key], list) else [table[key]]
    values: list[float] = []
    for index, item in enumerate(raw):
        if isinstance(item, bool) or not isinstance(item, _NUMBER):
            raise _fail(source, f"{where}.{key}", f"expected numbers, got {item!r}.")
        if not math.isfinite(item) or item < 0:
            raise _fail(source, f"{where}.{key}", f"{item!r} is not a usable ε: give a finite number ≥ 0.")
        if key == "eps_grey" and item > 255:
            raise _fail(source, f"{where}.{key}", f"{item!r}: ε must be at most 255 grey levels "
                                                  "(1.0 in [0,1] units).")
        if key == "eps" and item > 1:
            fix = f"Use eps_grey = {item} for grey levels." if item <= 255 else \
                "ε must be at most 1.0 in [0,1] units (255 grey levels)."
            raise _fail(source, f"{where}.{key}", f"{item!r} is outside [0, 1] pixel units. {fix}")
        value = float(item) / 255.0 if key == "eps_grey" else float(item)
        for first, earlier in enumerate(values):
            # Compared in grey levels, to the millionth that thresholds and figures match ε to.
            if math.isclose(earlier * 255.0, value * 255.0, rel_tol=0.0, abs_tol=1e-6):
                raise _fail(source, f"{where}.{key}",
                            f"item {index} ({item!r}) repeats item {first} ({raw[first]!r}): both are ε = "
                            f"{value * 255.0:g}/255, and each ε is one cell, so it would be computed and "
                            "counted twice. Drop the repeat.")
        values.append(value)
    if not values:
        raise _fail(source, f"{where}.{key}", "the list is empty; give at least one ε.")
    return tuple(values)


def _figures_setting(source: str, value: bool | list[Any]) -> bool | tuple[float, ...]:
    """``suite.figures``: true/false, or a non-empty list of ε in grey levels (numbers > 0)."""
    if isinstance(value, bool):
        return value
    fix = "Write figures = true, false, or a list of ε in grey levels, e.g. figures = [1, 8]."
    if not value:
        raise _fail(source, "suite.figures", f"the list is empty. {fix}")
    for item in value:
        if isinstance(item, bool) or not isinstance(item, _NUMBER) or not item > 0 or not math.isfinite(item):
            raise _fail(source, "suite.figures", f"{item!r} is not a number > 0 (ε in grey levels). {fix}")
    return tuple(float(item) for item in value)


def _check_train(source: str, where: str, settings: dict[str, Any]) -> None:
    """A ``[models.train]`` table: keys, types and values as :class:`~robustbench_us.training.TrainConfig` takes them.

    The runner builds the config only when it reaches the model, after earlier groups
    ran; checking here makes a typo fail before any work.
    """
    # training imports torch; only suites that train a model pay for it (training never imports this module).
    from robustbench_us.errors import TrainingError
    from robustbench_us.training import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    allowed = [f.name for f in dataclasses.fields(TrainConfig)]
    for key, value in settings.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _fail(source, f"{where}.{key}", f"unknown training setting.{hint} Allowed: {', '.join(allowed)}.")
        if _conforms(value, hints[key]) is False:
            raise _fail(source, f"{where}.{key}", f"expected {_type_text(hints[key])}, got "
                                                  f"{type(value).__name__} {value!r}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(source, f"{where}.{key}", f"{value!r} is not a finite number.")
        if key == "seed":
            _check_seed(source, f"{where}.seed", value)
    try:
        TrainConfig(**settings)
    except TrainingError as exc:
        raise _fail(source, where, f"{exc} Fix the setting in the model's train table.") from None


def parse_suite(data: dict[str, Any], *, source: str = "<suite>", registry: Registry | None = None,
                path: Path | None = None, scale: str | None = None) -> Suite:
    """Validate a parsed TOML document and build a :class:`Suite`.

    With a ``registry``, every plugin name and option is checked too, so a typo fails
    here, before any work starts.
    """
    if not isinstance(data, dict):
        raise SuiteError(f"{source}: expected a TOML document (a table at the top level).")
    if scale is not None:
        data = apply_scale(data, scale, source)
    for key, value in data.items():
        if key not in _TOP:
            raise _fail(source, key, f"unknown top-level key. Allowed: {', '.join(_TOP)}.")
        if not isinstance(value, _TOP[key]):
            shape = "[suite]" if key == "suite" else f"[[{key}]]"
            raise _fail(source, key, f"expected {shape}, got {type(value).__name__}.")
    for scale_name, table in (data.get("scales") or {}).items():
        _check_table(source, f"scales.{scale_name}", table, "scales")
    head = _check_table(source, "suite", data.get("suite", {}), "suite")
    default_name = path.stem if path is not None else ""
    name = head.get("name", default_name)
    if not name or not all(c.isalnum() or c in "-_" for c in name):
        raise _fail(source, "suite.name", f"{name!r} is not a usable name; use letters, digits, '-' or '_'.")
    for section in ("datasets", "models", "explainers", "attacks"):
        if not data.get(section):
            raise _fail(source, section, f"the suite names no {section}; add at least one [[{section}]] table.")
    seed = _check_seed(source, "suite.seed", head.get("seed", 0))
    n_images = head.get("n_images", 0)
    if n_images < 0:
        raise _fail(source, "suite.n_images", "must be ≥ 0 (0 means every image).")
    batch_size = head.get("batch_size", 32)
    if batch_size < 1:
        raise _fail(source, "suite.batch_size", "must be ≥ 1.")
    cell_timeout = head.get("cell_timeout")
    if cell_timeout is not None and not (math.isfinite(cell_timeout) and cell_timeout > 0):
        raise _fail(source, "suite.cell_timeout", f"{cell_timeout!r} is not usable: give a finite number of "
                                                  "seconds > 0, or drop the key for no limit.")
    device = head.get("device", "auto")
    if device not in DEVICES and not device.startswith("cuda:"):
        raise _fail(source, "suite.device", f"{device!r} is not one of {', '.join(DEVICES)} (or cuda:N).")

    def entries(section: str) -> list[dict[str, Any]]:
        out = []
        for i, table in enumerate(data[section]):
            where = f"{section}[{i}]"
            table = _check_table(source, where, table, section)
            if section != "thresholds" and "name" not in table:
                raise _fail(source, where, "missing key 'name'.")
            if "label" in table and not table["label"].strip():
                raise _fail(source, f"{where}.label", "is empty; give a display name or drop the key.")
            for key, why in _SET_BY_RUNNER.get(section, {}).items():
                if key in table.get("options", {}):
                    raise _fail(source, f"{where}.options.{key}", f"the runner sets {key} itself, from {why}; "
                                                                  "set it there and drop it from options.")
            out.append(table)
        return out

    datasets = []
    for i, t in enumerate(entries("datasets")):
        if t.get("part", "test") not in ("train", "val", "test"):
            raise _fail(source, f"datasets[{i}].part", f"{t['part']!r} is not 'train', 'val' or 'test'.")
        split_seed = _check_seed(source, f"datasets[{i}].split_seed", t.get("split_seed", 0))
        entry = DatasetEntry(t["name"], t.get("root"), dict(t.get("options", {})), split_seed, t.get("part", "test"))
        if entry in datasets:
            raise _fail(source, f"datasets[{i}]",
                        f"same dataset as datasets[{datasets.index(entry)}] (name {entry.name!r}, root, options, "
                        "split_seed and part all equal); its cells would be computed and counted twice. Drop one, "
                        "or give it another split_seed, part or options.")
        datasets.append(entry)
    models = []
    for i, t in enumerate(entries("models")):
        if "checkpoint" in t and "train" in t:
            raise _fail(source, f"models[{i}]", "give either checkpoint or train, not both.")
        if t.get("input_size", 32) < 32 or t.get("input_size", 32) % 32:
            raise _fail(source, f"models[{i}].input_size", "must be a multiple of 32, at least 32.")
        if "train" in t:
            _check_train(source, f"models[{i}].train", t["train"])
        models.append(ModelEntry(t["name"], t.get("input_size"), t.get("checkpoint"), t.get("sha256"),
                                 dict(t["train"]) if "train" in t else None, dict(t.get("options", {})),
                                 t.get("label")))
    seen: dict[str, int] = {}
    for i, m in enumerate(models):
        if m.key in seen:
            j = seen[m.key]
            raise _fail(source, f"models[{i}]",
                        f"same model as models[{j}] ({m.key!r}: same name or label and input size); records "
                        f"would mix the two. Give one of them a distinct label = \"...\" "
                        f"(e.g. label = \"{m.label or m.name}-2\").")
        seen[m.key] = i
    explainers = [ExplainerEntry(t["name"], dict(t.get("options", {})), t.get("label"))
                  for t in entries("explainers")]
    seen = {}
    for i, e in enumerate(explainers):
        if e.key in seen:
            raise _fail(source, f"explainers[{i}]",
                        f"same explainer as explainers[{seen[e.key]}] ({e.key!r}: same name or label); records and "
                        f"maps would mix the two. Give one of them a distinct label = \"...\" "
                        f"(e.g. label = \"{e.key}-2\").")
        seen[e.key] = i
    attacks = []
    for i, t in enumerate(entries("attacks")):
        if t.get("region", "all") not in REGIONS:
            raise _fail(source, f"attacks[{i}].region", f"{t['region']!r} is not one of {', '.join(REGIONS)}.")
        if t.get("labels", "true") not in LABEL_SOURCES:
            raise _fail(source, f"attacks[{i}].labels", f"{t['labels']!r} is not one of {', '.join(LABEL_SOURCES)}: "
                                                        "\"true\" attacks the true label, \"predicted\" the model's own "
                                                        "clean prediction (the study's reading).")
        attacks.append(AttackEntry(t["name"], _eps_values(source, f"attacks[{i}]", t), dict(t.get("options", {})),
                                   t.get("region", "all"), t.get("label"), t.get("labels", "true")))
    thresholds = []
    for i, t in enumerate(entries("thresholds") if data.get("thresholds") else []):
        for key in ("metric", "op", "value"):
            if key not in t:
                raise _fail(source, f"thresholds[{i}]", f"missing key {key!r}.")
        if t["op"] not in THRESHOLD_OPS:
            raise _fail(source, f"thresholds[{i}].op", f"{t['op']!r} is not one of {', '.join(THRESHOLD_OPS)}.")
        if not math.isfinite(t["value"]):
            raise _fail(source, f"thresholds[{i}].value", f"{t['value']!r} is not a finite number; every cell "
                                                          "would fail the comparison. Give a number.")
        threshold = Threshold(t["metric"], t["op"], float(t["value"]), dict(t.get("where", {})))
        problem = check_where(threshold)
        if problem:
            raise _fail(source, f"thresholds[{i}].where", problem)
        thresholds.append(threshold)

    if registry is not None:
        checks = [(Kind.DATASET, "datasets", datasets), (Kind.MODEL, "models", models),
                  (Kind.EXPLAINER, "explainers", explainers), (Kind.ATTACK, "attacks", attacks)]
        for kind, section, items in checks:
            for i, item in enumerate(items):
                try:
                    spec = registry.get(kind, item.name)
                except RobustBenchError as exc:
                    raise _fail(source, f"{section}[{i}].name", str(exc)) from None
                problem = _option_problem(spec.factory, item.options, hidden=set(_SET_BY_RUNNER[section]))
                if problem:
                    raise _fail(source, f"{section}[{i}].options", f"{item.name!r}: {problem}")
    labels = [a.display for a in attacks]
    if len(set(zip(labels, [a.region for a in attacks]))) != len(attacks):
        raise _fail(source, "attacks", "the same attack appears twice with the same region; "
                                       "give one of them a distinct label = \"...\".")
    quantize = head.get("quantize", "none")
    if quantize not in QUANTIZE:
        raise _fail(source, "suite.quantize", f"{quantize!r} is not one of {', '.join(QUANTIZE)}.")
    if quantize == "uint8":
        _check_whole_grey_levels(source, attacks, registry)
    return Suite(name=name, path=path, datasets=tuple(datasets), models=tuple(models),
                 explainers=tuple(explainers), attacks=tuple(attacks), description=head.get("description", ""),
                 seed=seed, n_images=n_images, batch_size=batch_size, device=device,
                 thresholds=tuple(thresholds), notes=head.get("notes", ""), cell_timeout=cell_timeout,
                 figures=_figures_setting(source, head.get("figures", True)), quantize=quantize)


def _check_whole_grey_levels(source: str, attacks: list[AttackEntry], registry: Registry | None) -> None:
    """With ``quantize = "uint8"`` every L∞ budget must be a whole number of grey levels.

    Rounding to the 8-bit grid keeps an L∞ perturbation inside its ball only when the
    ball's edges lie on the grid: a budget of 0.5 grey levels would round to 0 or to 1.
    """
    for i, attack in enumerate(attacks):
        eps_values = attack.eps
        if registry is not None:
            spec = registry.get(Kind.ATTACK, attack.name)
            if spec.norm == "none":
                continue  # no budget to keep (e.g. a control without one)
            if spec.norm != "linf":
                raise _fail(source, f"attacks[{i}]", f"attack {attack.name!r} has an {spec.norm} budget; rounding to "
                                                     "the 8-bit grid can push an L2 perturbation past its ε. Use "
                                                     "quantize = \"none\" for L2 attacks (or run them in a suite "
                                                     "of their own).")
            eps_values = eps_values or (spec.eps,)
        for eps in eps_values:
            grey = eps * 255.0
            if abs(grey - round(grey)) > 1e-6:
                raise _fail(source, f"attacks[{i}]",
                            f"ε = {grey:g} grey levels is not a whole number of grey levels, which quantize = "
                            "\"uint8\" needs (images are rounded to steps of 1/255). Use whole grey levels, e.g. "
                            f"eps_grey = [{max(1, round(grey))}], or quantize = \"none\".")


def load_suite(path: str | Path, *, registry: Registry | None = None, scale: str | None = None) -> Suite:
    """Read and validate a suite file; a bare name is looked up in ``benchmarks/suites/``.

    ``scale`` applies the suite's ``[scales.<scale>]`` table (see :func:`apply_scale`).
    """
    path = resolve_suite_path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{path}: not valid TOML: {exc}. Fix the syntax at that line.") from None
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text ({exc}).") from None
    return parse_suite(data, source=str(path), registry=registry, path=path, scale=scale)


def suites_folder() -> Path:
    """The folder of suites shipped inside the package (``robustbench_us/suites``), wherever it is installed."""
    # Package data, so an installed wheel has them too; installed packages are folders on disk.
    return Path(str(resources.files("robustbench_us").joinpath("suites")))


def resolve_suite_path(path: str | Path) -> Path:
    """A path as given; for a bare name, ``./<name>.toml``, else the shipped ``robustbench_us/suites/<name>.toml``.

    A bare name that is both a file in the current folder and a shipped suite means the
    user's file: it is the suite they wrote and ran here (``run my-suite``, ``leaderboard my-suite``).
    """
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    folder = suites_folder()
    if candidate.suffix == "" and len(candidate.parts) == 1:
        for found in (Path(f"{candidate.name}.toml"), folder / f"{candidate.name}.toml"):
            if found.is_file():
                return found
    available = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
    shipped_list = ", ".join(available) or f"(none: {folder} is missing; reinstall robustbench-us)"
    raise SuiteError(f"Suite {str(path)!r} not found. Give a path to a .toml file, NAME for ./NAME.toml, or one "
                     f"of the shipped suites: {shipped_list}.")
