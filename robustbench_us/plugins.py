"""The plugin host: load plugins, collect their specs, look names up.

Plugins come from the ``robustbench_us`` entry-point group, like any third-party
plugin, plus local modules named for plugin authors. Environment variables:

``ROBUSTBENCH_US_PLUGINS``
    Comma-separated entry-point names: load only these (``""`` loads none).
``ROBUSTBENCH_US_DISABLE_PLUGINS``
    Comma-separated entry-point names (or local module names) to skip.
``ROBUSTBENCH_US_LOCAL_PLUGINS``
    Comma-separated module names or ``.py`` paths loaded without installing them.
``ROBUSTBENCH_US_ALLOW_PLUGINS``
    Comma-separated allow-list of distributions (or local module names); any other
    plugin is refused. Unset means no restriction.
``ROBUSTBENCH_US_TRACE_HOOKS``
    Set to 1 to log every hook call (logger ``robustbench_us.hooks``, DEBUG).

The allow- and disable-lists are decided from names and distribution metadata before a plugin's code
runs: a disabled or refused plugin is never imported. An entry point is allowed
through its distribution's name only (compared as PEP 503 normalises it), never
through its own name, which any distribution can choose.

An installed plugin that fails to import or to register is skipped with a
:class:`PluginWarning` naming it and the fix, so one broken third-party package does
not stop every command; ``robustbench-us plugins`` lists it with ``"status": "failed"``.
With ``ROBUSTBENCH_US_ALLOW_PLUGINS`` set, every plugin was asked for, and a failure
is a :class:`~robustbench_us.errors.PluginError`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from robustbench_us import hookspecs
from robustbench_us.data.roots import PACKS_ENV
from robustbench_us.errors import DuplicateNameError, PluginError, UnknownNameError
from robustbench_us.specs import SPEC_TYPES, Kind, Spec

ENTRY_POINT_GROUP = "robustbench_us"
ENV_ONLY = "ROBUSTBENCH_US_PLUGINS"
ENV_DISABLE = "ROBUSTBENCH_US_DISABLE_PLUGINS"
ENV_LOCAL = "ROBUSTBENCH_US_LOCAL_PLUGINS"
ENV_ALLOW = "ROBUSTBENCH_US_ALLOW_PLUGINS"
ENV_TRACE = "ROBUSTBENCH_US_TRACE_HOOKS"

_HOOKS: dict[Kind, str] = {
    Kind.DATASET: "register_datasets",
    Kind.MODEL: "register_models",
    Kind.EXPLAINER: "register_explainers",
    Kind.ATTACK: "register_attacks",
}
logger = logging.getLogger(__name__)


class PluginWarning(UserWarning):
    """An installed plugin was skipped because it is broken; the message names it and the fix."""


@dataclass(frozen=True)
class PluginInfo:
    """Where a plugin came from, and whether it loaded (``error`` says why not)."""

    name: str
    source: str  # "entry-point" or "local"
    distribution: str | None
    version: str | None
    location: str
    hooks: tuple[str, ...] = ()
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    @property
    def failed(self) -> bool:
        """Whether the plugin was skipped because it failed to import or register."""
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view for ``robustbench-us plugins``."""
        return {"name": self.name, "source": self.source, "distribution": self.distribution,
                "version": self.version, "location": self.location, "hooks": list(self.hooks),
                "registered": self.registered, "status": "failed" if self.failed else "loaded",
                "error": self.error}


def normalize_distribution(name: str) -> str:
    """A distribution name as PEP 503 compares it: lowercase, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _skip_broken(info: PluginInfo, failed: dict[str, PluginInfo]) -> None:
    """Record a broken installed plugin and warn, naming it, its distribution, the error and the fix."""
    failed[info.name] = info
    warnings.warn(
        f"Skipped plugin {info.name!r} from distribution {info.distribution!r}: {info.error}. "
        f"Fix or uninstall that distribution, or silence this with {ENV_DISABLE}={info.name}.",
        PluginWarning, stacklevel=4)


def _env_list(name: str, environ: dict[str, str]) -> list[str] | None:
    raw = environ.get(name)
    if raw is None:
        return None
    return [item.strip() for item in raw.split(",") if item.strip()]


def _import_local(ref: str) -> ModuleType:
    """Import a module by dotted name or a ``.py`` path."""
    if ref.endswith(".py") or os.sep in ref:
        path = Path(ref).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"Local plugin file {ref!r} does not exist ({ENV_LOCAL}). Fix the path.")
        module_name = f"robustbench_us_local_{path.stem}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise PluginError(f"Local plugin {ref!r} cannot be imported as a module.")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the plugin's own code failed; say which file
            sys.modules.pop(module_name, None)
            raise PluginError(f"Local plugin {ref!r} ({ENV_LOCAL}) failed to import: {type(exc).__name__}: "
                              f"{exc}. Fix the file, or remove it from {ENV_LOCAL}.") from exc
        return module
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise PluginError(
            f"Local plugin module {ref!r} ({ENV_LOCAL}) cannot be imported: {exc}. "
            "Put its folder on PYTHONPATH or give a path to the .py file."
        ) from exc


def _local_name(ref: str) -> str:
    """The plugin name of a local reference: the module name, or a ``.py`` path's stem."""
    return Path(ref).stem if ref.endswith(".py") or os.sep in ref else ref


def get_plugin_manager(environ: dict[str, str] | None = None,
                       extra_plugins: Iterable[tuple[str, object]] = ()) -> pluggy.PluginManager:
    """A plugin manager with the hook specs and every enabled plugin loaded.

    ``extra_plugins`` are ``(name, module_or_object)`` pairs registered as local
    plugins (tests use it for small fake plugins).
    """
    env = dict(os.environ if environ is None else environ)
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    only = _env_list(ENV_ONLY, env)
    disabled = set(_env_list(ENV_DISABLE, env) or [])
    allowed = _env_list(ENV_ALLOW, env)
    allowed_dists = {normalize_distribution(a) for a in allowed or []}
    infos: dict[str, PluginInfo] = {}
    failed: dict[str, PluginInfo] = {}

    def refuse(what: str, passes_by: str, fix: str) -> PluginError:
        return PluginError(f"{what} is not in the allow-list {ENV_ALLOW}={','.join(allowed or [])} "
                           f"({passes_by}). {fix}")

    entry_points: dict[str, tuple[metadata.EntryPoint, str | None]] = {}
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist_name = ep.dist.metadata["Name"] if ep.dist is not None else None
        if ep.name in entry_points:
            first, first_dist = entry_points[ep.name]
            if normalize_distribution(first_dist or "") == normalize_distribution(dist_name or ""):
                continue  # the same distribution visible twice on sys.path
            # Taking either silently would let one distribution shadow another's plugin.
            raise PluginError(
                f"Two installed plugins are named {ep.name!r}: {first.value} from distribution {first_dist!r} "
                f"and {ep.value} from distribution {dist_name!r}. Uninstall one of them."
            )
        entry_points[ep.name] = (ep, dist_name)
    for name, (ep, dist_name) in entry_points.items():
        if name in disabled or (only is not None and name not in only):
            continue
        # Decided before ep.load(): a refused plugin's code never runs. The entry point's own
        # name is chosen by whoever publishes it, so only the distribution name counts.
        if allowed is not None and (dist_name is None or normalize_distribution(dist_name) not in allowed_dists):
            raise refuse(f"Plugin {name!r} (distribution {dist_name!r})",
                         "an installed plugin passes it by its distribution's name, not its entry point's",
                         f"Add {dist_name or 'its distribution'} there, or disable it with {ENV_DISABLE}={name}.")
        version = ep.dist.version if ep.dist is not None else None
        try:
            problem = f"failed to import ({ep.value})"
            plugin = ep.load()
            problem = f"cannot be registered ({ep.value})"  # e.g. a hook whose arguments are misspelt
            pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - any failure of a third-party plugin's own code
            problem += f": {type(exc).__name__}: {exc}"
            if allowed is not None:
                raise PluginError(f"Plugin {name!r} from distribution {dist_name!r} {problem}. "
                                  f"Fix or uninstall it, or set {ENV_DISABLE}={name}.") from exc
            _skip_broken(PluginInfo(name, "entry-point", dist_name, version, ep.value, error=problem), failed)
            continue
        infos[name] = PluginInfo(name, "entry-point", dist_name, version,
                                 getattr(plugin, "__file__", None) or ep.value)
    for ref in _env_list(ENV_LOCAL, env) or []:
        name = _local_name(ref)
        if name in disabled:
            continue
        if allowed is not None and name not in allowed:
            raise refuse(f"Local plugin {name!r} ({ENV_LOCAL}={ref})", "a local plugin passes it by its module name",
                         f"Add {name} there, or remove it from {ENV_LOCAL}.")
        module = _import_local(ref)
        pm.register(module, name=name)
        infos[name] = PluginInfo(name, "local", None, None, getattr(module, "__file__", ref) or ref)
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name, "local", None, None, getattr(plugin, "__file__", None) or repr(plugin))
    while True:
        try:
            pm.check_pending()
            break
        except pluggy.PluginValidationError as exc:
            name = pm.get_name(exc.plugin)
            message = (f"Plugin {name!r} implements a hook robustbench_us does not define: {exc}. "
                       f"Valid hooks: {', '.join(_HOOKS.values())}.")
            info = infos.get(name)
            if allowed is not None or info is None or info.source != "entry-point":
                raise PluginError(message) from exc
            pm.unregister(exc.plugin)
            del infos[name]
            _skip_broken(replace(info, error=f"implements a hook robustbench_us does not define: {exc}"), failed)
    if env.get(ENV_TRACE) == "1":
        pm.trace.root.setwriter(lambda message: logging.getLogger("robustbench_us.hooks").debug(message.rstrip()))
        pm.enable_tracing()
    pm._robustbench_us_infos = infos  # type: ignore[attr-defined]
    pm._robustbench_us_failed = failed  # type: ignore[attr-defined]
    pm._robustbench_us_strict = allowed is not None  # type: ignore[attr-defined]
    return pm


class Registry:
    """Every spec the loaded plugins registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._specs: dict[Kind, dict[str, Spec]] = {kind: {} for kind in Kind}
        base_infos: dict[str, PluginInfo] = getattr(pm, "_robustbench_us_infos", {})
        failed: dict[str, PluginInfo] = dict(getattr(pm, "_robustbench_us_failed", {}))
        strict = getattr(pm, "_robustbench_us_strict", True)
        registered: dict[str, dict[str, list[str]]] = {}
        hooks_of: dict[str, list[str]] = {}
        for kind, hook_name in _HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            # Call each implementation on its own so every spec is attributed to its plugin.
            for impl in reversed(hook.get_hookimpls()):
                name = impl.plugin_name
                if name in failed:
                    continue
                hooks_of.setdefault(name, []).append(hook_name)
                info = base_infos.get(name)
                try:
                    impl.function(register=self._register_callback(kind, name, registered))
                except DuplicateNameError:
                    raise  # two plugins disagree; neither is the broken one
                except Exception as exc:  # noqa: BLE001 - a third-party plugin's own code failed
                    if info is None or info.source != "entry-point":
                        raise  # a local plugin is being written: its own traceback helps more than a skip
                    problem = f"{hook_name} failed: {type(exc).__name__}: {exc}"
                    if strict:
                        raise PluginError(f"Plugin {name!r} from distribution {info.distribution!r}: {problem}. "
                                          f"Fix or uninstall it, or set {ENV_DISABLE}={name}.") from exc
                    self._forget(name, registered)
                    pm.unregister(name=name)
                    _skip_broken(replace(info, hooks=tuple(hooks_of.pop(name)), error=problem), failed)
        self.infos: dict[str, PluginInfo] = {}
        for name in list(base_infos) + [n for n in hooks_of if n not in base_infos]:
            if name in failed:
                continue
            base = base_infos.get(name) or PluginInfo(name, "local", None, None, repr(pm.get_plugin(name)))
            self.infos[name] = replace(base, hooks=tuple(hooks_of.get(name, ())),
                                       registered=registered.get(name, {}))
        # Listed last so ``robustbench-us plugins`` shows what was skipped and why.
        self.infos |= failed

    @property
    def failed(self) -> dict[str, PluginInfo]:
        """Installed plugins skipped because they failed to import or register, with the reason."""
        return {name: info for name, info in self.infos.items() if info.failed}

    def _forget(self, plugin_name: str, registered: dict[str, dict[str, list[str]]]) -> None:
        """Drop every spec a plugin registered before it failed, so none of a broken plugin is half-loaded."""
        for kind, names in registered.pop(plugin_name, {}).items():
            for spec_name in names:
                self._specs[Kind(kind)].pop(spec_name, None)

    def _register_callback(self, kind: Kind, plugin_name: str,
                           registered: dict[str, dict[str, list[str]]]) -> Callable[[Spec], None]:
        expected = SPEC_TYPES[kind]

        def register(spec: Spec) -> None:
            if not isinstance(spec, expected):
                raise PluginError(
                    f"Plugin {plugin_name!r} passed {type(spec).__name__} to register in {_HOOKS[kind]}; "
                    f"that hook takes {expected.__name__}."
                )
            existing = self._specs[kind].get(spec.name)
            if existing is not None:
                raise DuplicateNameError(str(kind), spec.name, existing.plugin, plugin_name)
            self._specs[kind][spec.name] = replace(spec, plugin=plugin_name)
            registered.setdefault(plugin_name, {}).setdefault(str(kind), []).append(spec.name)

        return register

    def specs(self, kind: Kind | str) -> list[Spec]:
        """Specs of one kind, sorted by name."""
        kind = Kind(kind)
        return [self._specs[kind][name] for name in sorted(self._specs[kind])]

    def names(self, kind: Kind | str) -> list[str]:
        """Registered names of one kind, sorted."""
        return [spec.name for spec in self.specs(kind)]

    def get(self, kind: Kind | str, name: str) -> Spec:
        """The spec registered under ``name``; a family answers ``prefix:<variant>``."""
        kind = Kind(kind)
        table = self._specs[kind]
        if name in table and not table[name].is_family:
            return table[name]
        if ":" in name:
            family = table.get(name.split(":", 1)[0] + ":*")
            if family is not None and name.split(":", 1)[1]:
                return family
        raise UnknownNameError(str(kind), name, table)

    def create(self, kind: Kind | str, name: str, **options: Any) -> Any:
        """Call the factory registered under ``name`` with ``options``.

        With ``ROBUSTBENCH_US_DATA_PACKS`` set, a dataset comes from the pack made for
        this name, input size and options (see :mod:`robustbench_us.data.packs`).
        """
        folder = os.environ.get(PACKS_ENV) if Kind(kind) is Kind.DATASET else None
        if folder:
            from robustbench_us.data import packs

            canon = packs.canonical_options(options, getattr(self.get(kind, name), "options", None))
            size = int(options.get("image_size") or 224)
            return packs.load_pack(packs.find_pack(folder, name, size, canon))
        return self.build(kind, name, **options)

    def build(self, kind: Kind | str, name: str, **options: Any) -> Any:
        """Call the factory registered under ``name`` with ``options`` (never a pack: the files themselves)."""
        spec = self.get(kind, name)
        if spec.is_family:
            options = {"variant": name.split(":", 1)[1], **options}
        return spec.factory(**options)


@functools.cache
def default_registry() -> Registry:
    """The registry of the plugins enabled in this process's environment (built once)."""
    return Registry(get_plugin_manager())


def reset_default_registry() -> None:
    """Forget the cached registry, e.g. after changing the plugin environment variables."""
    default_registry.cache_clear()
