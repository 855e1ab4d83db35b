"""Suites: TOML files naming the grid to run, validated before any work starts."""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from robustbench_us.errors import RobustBenchError, SuiteError
from robustbench_us.plugins import Registry
from robustbench_us.specs import Kind

REGIONS = ("all", "inside", "outside")
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


@dataclass(frozen=True)
class AttackEntry:
    """One attack of a suite, swept over ``eps`` (in [0, 1] pixel units)."""

    name: str
    eps: tuple[float, ...]
    options: dict[str, Any] = field(default_factory=dict)
    region: str = "all"
    label: str | None = None  # a display name, when one attack appears twice with other options

    @property
    def display(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Threshold:
    """A CI gate: ``metric op value`` for the cells it selects."""

    metric: str
    op: str
    value: float
    where: dict[str, Any] = field(default_factory=dict)


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

    def figures_at(self, eps: float) -> bool:
        """Whether a cell at ``eps`` (in [0, 1] units) writes its figures."""
        if isinstance(self.figures, bool):
            return self.figures
        return any(math.isclose(eps * 255.0, grey, rel_tol=1e-6, abs_tol=1e-6) for grey in self.figures)


# key -> (accepted types, description used in messages)
_NUMBER = (int, float)
_SCHEMA: dict[str, dict[str, tuple[tuple[type, ...], str]]] = {
    "suite": {"name": ((str,), "a kebab-case name"), "description": ((str,), "text"),
              "seed": ((int,), "an integer"), "n_images": ((int,), "an integer ≥ 0 (0 = all)"),
              "batch_size": ((int,), "an integer ≥ 1"), "device": ((str,), f"one of {', '.join(DEVICES)}"),
              "notes": ((str,), "text shown on the leaderboard"),
              "cell_timeout": (_NUMBER, "seconds (a number > 0)"),
              "figures": ((bool, list), ("true, false, or a list of ε in grey levels (write the study's "
                                         "panels per cell, or only for cells at those ε)"))},
    "datasets": {"name": ((str,), "a dataset name"), "root": ((str,), "a folder path"),
                 "options": ((dict,), "a table"), "split_seed": ((int,), "an integer"),
                 "part": ((str,), "'train', 'val' or 'test'")},
    "models": {"name": ((str,), "a model name"), "input_size": ((int,), "an integer (pixels)"),
               "checkpoint": ((str,), "a path to a .safetensors file"), "sha256": ((str,), "a hex digest"),
               "train": ((dict,), "a table of training settings"), "options": ((dict,), "a table"),
               "label": ((str,), "a display name")},
    "explainers": {"name": ((str,), "an explainer name"), "options": ((dict,), "a table")},
    "attacks": {"name": ((str,), "an attack name"), "eps": ((int, float, list), "a number or a list of numbers"),
                "eps_grey": ((int, float, list), "a number or list, in grey levels (ε×255)"),
                "options": ((dict,), "a table"), "region": ((str,), f"one of {', '.join(REGIONS)}"),
                "label": ((str,), "a display name")},
    "thresholds": {"metric": ((str,), "a metric name"), "op": ((str,), "one of >=, <=, >, <"),
                   "value": (_NUMBER, "a number"), "where": ((dict,), "a table selecting cells")},
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


def _unknown_options(factory: Any, options: dict[str, Any]) -> str | None:
    """Why ``options`` cannot be passed to ``factory`` (a key it does not take), or None.

    Read from the factory's signature, so a typo fails when the suite is read rather
    than as a failed cell; a factory taking ``**kwargs`` accepts anything.
    """
    import inspect

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    allowed = [name for name, p in parameters.items()
               if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    unknown = [key for key in options if key not in allowed]
    if not unknown:
        return None
    import difflib

    close = difflib.get_close_matches(unknown[0], allowed, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return (f"unknown option {unknown[0]!r}.{hint} It takes: "
            f"{', '.join(n for n in allowed if n != 'variant') or '(no options)'}.")


def _fail(source: str, where: str, message: str) -> SuiteError:
    return SuiteError(f"{source}: {where}: {message}")


def _check_table(source: str, where: str, table: Any, section: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise _fail(source, where, f"expected a table, got {type(table).__name__}. Write it as [[{section}]].")
    schema = _SCHEMA[section]
    for key, value in table.items():
        if key not in schema:
            import difflib

            close = difflib.get_close_matches(key, schema, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise _fail(source, f"{where}.{key}", f"unknown key. Allowed: {', '.join(schema)}.{hint}")
        types, text = schema[key]
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            raise _fail(source, f"{where}.{key}", f"expected {text}, got {type(value).__name__} {value!r}.")
    return table


def _eps_values(source: str, where: str, table: dict[str, Any]) -> tuple[float, ...]:
    if "eps" in table and "eps_grey" in table:
        raise _fail(source, where, "give either eps (in [0, 1] units) or eps_grey (grey levels), not both.")
    key = "eps" if "eps" in table else "eps_grey" if "eps_grey" in table else None
    if key is None:
        return ()
    raw = table[key] if isinstance(table[key], list) else [table[key]]
    values: list[float] = []
    for item in raw:
        if isinstance(item, bool) or not isinstance(item, _NUMBER):
            raise _fail(source, f"{where}.{key}", f"expected numbers, got {item!r}.")
        value = float(item) / 255.0 if key == "eps_grey" else float(item)
        if not 0.0 <= value <= 1.0:
            raise _fail(source, f"{where}.{key}",
                        f"{item!r} is outside [0, 1] pixel units. Use eps_grey = {item} for grey levels.")
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


def parse_suite(data: dict[str, Any], *, source: str = "<suite>", registry: Registry | None = None,
                path: Path | None = None, scale: str | None = None) -> Suite:
    """Validate a parsed TOML document and build a :class:`Suite`.

    With a ``registry``, every plugin name is checked too, so a typo fails here,
    before any work starts.
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
    n_images = head.get("n_images", 0)
    if n_images < 0:
        raise _fail(source, "suite.n_images", "must be ≥ 0 (0 means every image).")
    batch_size = head.get("batch_size", 32)
    if batch_size < 1:
        raise _fail(source, "suite.batch_size", "must be ≥ 1.")
    cell_timeout = head.get("cell_timeout")
    if cell_timeout is not None and cell_timeout <= 0:
        raise _fail(source, "suite.cell_timeout", "must be a number of seconds > 0.")
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
            out.append(table)
        return out

    datasets = []
    for i, t in enumerate(entries("datasets")):
        if t.get("part", "test") not in ("train", "val", "test"):
            raise _fail(source, f"datasets[{i}].part", f"{t['part']!r} is not 'train', 'val' or 'test'.")
        datasets.append(DatasetEntry(t["name"], t.get("root"), dict(t.get("options", {})),
                                     t.get("split_seed", 0), t.get("part", "test")))
    models = []
    for i, t in enumerate(entries("models")):
        if "checkpoint" in t and "train" in t:
            raise _fail(source, f"models[{i}]", "give either checkpoint or train, not both.")
        if t.get("input_size", 32) < 32 or t.get("input_size", 32) % 32:
            raise _fail(source, f"models[{i}].input_size", "must be a multiple of 32, at least 32.")
        if "label" in t and not t["label"].strip():
            raise _fail(source, f"models[{i}].label", "is empty; give a display name or drop the key.")
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
    explainers = [ExplainerEntry(t["name"], dict(t.get("options", {}))) for t in entries("explainers")]
    attacks = []
    for i, t in enumerate(entries("attacks")):
        if t.get("region", "all") not in REGIONS:
            raise _fail(source, f"attacks[{i}].region", f"{t['region']!r} is not one of {', '.join(REGIONS)}.")
        attacks.append(AttackEntry(t["name"], _eps_values(source, f"attacks[{i}]", t), dict(t.get("options", {})),
                                   t.get("region", "all"), t.get("label")))
    thresholds = []
    for i, t in enumerate(entries("thresholds") if data.get("thresholds") else []):
        for key in ("metric", "op", "value"):
            if key not in t:
                raise _fail(source, f"thresholds[{i}]", f"missing key {key!r}.")
        if t["op"] not in (">=", "<=", ">", "<"):
            raise _fail(source, f"thresholds[{i}].op", f"{t['op']!r} is not one of >=, <=, >, <.")
        thresholds.append(Threshold(t["metric"], t["op"], float(t["value"]), dict(t.get("where", {}))))
        from robustbench_us.gates import check_where  # gates imports this module

        problem = check_where(thresholds[-1])
        if problem:
            raise _fail(source, f"thresholds[{i}].where", problem)

    if registry is not None:
        checks = [(Kind.DATASET, "datasets", datasets), (Kind.MODEL, "models", models),
                  (Kind.EXPLAINER, "explainers", explainers), (Kind.ATTACK, "attacks", attacks)]
        for kind, section, items in checks:
            for i, item in enumerate(items):
                try:
                    spec = registry.get(kind, item.name)
                except RobustBenchError as exc:
                    raise _fail(source, f"{section}[{i}].name", str(exc)) from None
                problem = _unknown_options(spec.factory, item.options)
                if problem:
                    raise _fail(source, f"{section}[{i}].options", f"{item.name!r}: {problem}")
    labels = [a.display for a in attacks]
    if len(set(zip(labels, [a.region for a in attacks]))) != len(attacks):
        raise _fail(source, "attacks", "the same attack appears twice with the same region; "
                                       "give one of them a distinct label = \"...\".")
    return Suite(name=name, path=path, datasets=tuple(datasets), models=tuple(models),
                 explainers=tuple(explainers), attacks=tuple(attacks), description=head.get("description", ""),
                 seed=head.get("seed", 0), n_images=n_images, batch_size=batch_size, device=device,
                 thresholds=tuple(thresholds), notes=head.get("notes", ""), cell_timeout=cell_timeout,
                 figures=_figures_setting(source, head.get("figures", True)))


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
    """The folder of suites shipped with the project."""
    return Path(__file__).resolve().parents[1] / "benchmarks" / "suites"


def resolve_suite_path(path: str | Path) -> Path:
    """A path as given, or ``benchmarks/suites/<name>.toml`` for a bare name."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    if candidate.suffix == "" and len(candidate.parts) == 1:
        shipped = suites_folder() / f"{candidate.name}.toml"
        if shipped.is_file():
            return shipped
    available = sorted(p.stem for p in suites_folder().glob("*.toml")) if suites_folder().is_dir() else []
    raise SuiteError(f"Suite {str(path)!r} not found. Give a path to a .toml file, or one of the shipped "
                     f"suites: {', '.join(available) or '(none)'}.")
