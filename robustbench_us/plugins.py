"""The plugin host: load plugins, collect their specs, look names up.

Plugins come from the ``robustbench_us`` entry-point group, like any third-party
plugin, plus local modules named for plugin authors. Environment variables:

``ROBUSTBENCH_US_PLUGINS``
    Comma-separated entry-point names: load only these (``""`` loads none).
``ROBUSTBENCH_US_DISABLE_PLUGINS``
    Comma-separated entry-point names to skip.
``ROBUSTBENCH_US_LOCAL_PLUGINS``
    Comma-separated module names or ``.py`` paths loaded without installing them.
``ROBUSTBENCH_US_ALLOW_PLUGINS``
    Comma-separated allow-list of distributions (or local module names); any other
    plugin is refused. Unset means no restriction.
``ROBUSTBENCH_US_TRACE_HOOKS``
    Set to 1 to log every hook call (logger ``robustbench_us.hooks``, DEBUG).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata as metadata
import importlib.util
import logging
import os
import sys
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


@dataclass(frozen=True)
class PluginInfo:
    """Where a loaded plugin came from."""

    name: str
    source: str  # "entry-point" or "local"
    distribution: str | None
    version: str | None
    location: str
    hooks: tuple[str, ...] = ()
    registered: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view for ``robustbench-us plugins``."""
        return {"name": self.name, "source": self.source, "distribution": self.distribution,
                "version": self.version, "location": self.location, "hooks": list(self.hooks),
                "registered": self.registered}


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
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(ref)
    except ImportError as exc:
        raise PluginError(
            f"Local plugin module {ref!r} ({ENV_LOCAL}) cannot be imported: {exc}. "
            "Put its folder on PYTHONPATH or give a path to the .py file."
        ) from exc


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
    infos: dict[str, PluginInfo] = {}

    def check_allowed(plugin_name: str, distribution: str | None) -> None:
        if allowed is None:
            return
        if plugin_name in allowed or (distribution is not None and distribution in allowed):
            return
        raise PluginError(
            f"Plugin {plugin_name!r} (distribution {distribution!r}) is not in the allow-list "
            f"{ENV_ALLOW}={','.join(allowed)}. Add it there, or disable it with {ENV_DISABLE}={plugin_name}."
        )

    seen: set[str] = set()
    for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in seen:  # the same distribution visible twice on sys.path
            continue
        seen.add(ep.name)
        if ep.name in disabled or (only is not None and ep.name not in only):
            continue
        dist = ep.dist
        dist_name = dist.metadata["Name"] if dist is not None else None
        check_allowed(ep.name, dist_name)
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure of a third-party plugin
            raise PluginError(
                f"Plugin {ep.name!r} from distribution {dist_name!r} failed to import ({ep.value}): "
                f"{type(exc).__name__}: {exc}. Fix or uninstall it, or set {ENV_DISABLE}={ep.name}."
            ) from exc
        pm.register(plugin, name=ep.name)
        infos[ep.name] = PluginInfo(ep.name, "entry-point", dist_name, dist.version if dist else None,
                                    getattr(plugin, "__file__", None) or ep.value)
    for ref in _env_list(ENV_LOCAL, env) or []:
        module = _import_local(ref)
        name = Path(ref).stem if ref.endswith(".py") else ref
        if name in disabled:
            continue
        check_allowed(name, None)
        pm.register(module, name=name)
        infos[name] = PluginInfo(name, "local", None, None, getattr(module, "__file__", ref) or ref)
    for name, plugin in extra_plugins:
        pm.register(plugin, name=name)
        infos[name] = PluginInfo(name, "local", None, None, getattr(plugin, "__file__", None) or repr(plugin))
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(
            f"Plugin {pm.get_name(exc.plugin)!r} implements a hook robustbench_us does not define: {exc}. "
            f"Valid hooks: {', '.join(_HOOKS.values())}."
        ) from exc
    if env.get(ENV_TRACE) == "1":
        pm.trace.root.setwriter(lambda message: logging.getLogger("robustbench_us.hooks").debug(message.rstrip()))
        pm.enable_tracing()
    pm._robustbench_us_infos = infos  # type: ignore[attr-defined]
    return pm


class Registry:
    """Every spec the loaded plugins registered, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm
        self._specs: dict[Kind, dict[str, Spec]] = {kind: {} for kind in Kind}
        base_infos: dict[str, PluginInfo] = getattr(pm, "_robustbench_us_infos", {})
        registered: dict[str, dict[str, list[str]]] = {}
        hooks_of: dict[str, list[str]] = {}
        for kind, hook_name in _HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            # Call each implementation on its own so every spec is attributed to its plugin.
            for impl in reversed(hook.get_hookimpls()):
                hooks_of.setdefault(impl.plugin_name, []).append(hook_name)
                impl.function(register=self._register_callback(kind, impl.plugin_name, registered))
        self.infos: dict[str, PluginInfo] = {}
        for name in list(base_infos) + [n for n in hooks_of if n not in base_infos]:
            base = base_infos.get(name) or PluginInfo(name, "local", None, None, repr(pm.get_plugin(name)))
            self.infos[name] = replace(base, hooks=tuple(hooks_of.get(name, ())),
                                       registered=registered.get(name, {}))

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
