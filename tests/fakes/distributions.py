"""Fake installed distributions: a ``*.dist-info`` folder with entry points, and the modules they name.

``importlib.metadata`` finds a distribution by its ``dist-info`` folder on ``sys.path``,
so a test puts the folder made here on ``sys.path`` (``monkeypatch.syspath_prepend``, or
``PYTHONPATH`` for a subprocess) and the host sees an installed third-party plugin,
without pip. Each module written here records its import in ``imported.txt`` beside it,
so a test can tell whether the host ran its code.
"""

from __future__ import annotations

from pathlib import Path

# Module bodies a fake plugin can have. Each first appends its name to imported.txt.
RECORD_IMPORT = ("from pathlib import Path as _Path\n"
                 "with open(_Path(__file__).with_name('imported.txt'), 'a') as _f:\n"
                 "    _f.write(__name__ + '\\n')\n")
ATTACK = '''
from robustbench_us import AttackSpec, hookimpl


def make_{fn}(*, eps: float = 1 / 255):
    """A fake attack of a fake distribution."""
    return None


@hookimpl
def register_attacks(register):
    register(AttackSpec(name="{attack}", factory=make_{fn}))
'''
BROKEN_IMPORT = "raise RuntimeError('this plugin is broken on purpose')\n"
BROKEN_HOOK = '''
from robustbench_us import AttackSpec, ModelSpec, hookimpl


def make_half(*, input_size: int = 32):
    """A model registered before the plugin fails."""
    return None


@hookimpl
def register_models(register):
    register(ModelSpec(name="half-registered", factory=make_half))


@hookimpl
def register_attacks(register):
    raise KeyError("config.json")
'''
MISSPELT_HOOK = '''
from robustbench_us import hookimpl


@hookimpl
def register_attack(register):  # missing the final 's'
    pass
'''


def make_distribution(folder: Path, dist: str, entry_points: dict[str, str], modules: dict[str, str],
                      version: str = "0.1") -> Path:
    """Write distribution ``dist`` (its entry points in group ``robustbench_us``) and its modules into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    info = folder / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n", encoding="utf-8")
    lines = ["[robustbench_us]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for module, body in modules.items():
        (folder / f"{module}.py").write_text(RECORD_IMPORT + body, encoding="utf-8")
    return folder


def imported(folder: Path) -> list[str]:
    """The fake modules in ``folder`` whose code ran, in order."""
    path = folder / "imported.txt"
    return path.read_text(encoding="utf-8").split() if path.is_file() else []
