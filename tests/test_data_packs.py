"""Dataset packs: a file dataset decoded once and rebuilt elsewhere is the same dataset."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from robustbench_us.cli import main as cli_main
from robustbench_us.data import packs
from robustbench_us.data.files import FileDataset
from robustbench_us.errors import DataError
from robustbench_us.plugins import Registry, get_plugin_manager
from robustbench_us.specs import Kind
from tests.test_datasets_busbra import _fake_busbra
from tests.test_datasets_busi import _fake_busi


def _same(a, b) -> None:
    ia, ma = a.arrays()
    ib, mb = b.arrays()
    assert type(a) is type(b)
    assert torch.equal(ia, ib)
    assert (ma is None and mb is None) or torch.equal(ma, mb)
    assert a.manifest_hash() == b.manifest_hash()
    assert (a.ids, a.labels, a.groups, a.classes) == (b.ids, b.labels, b.groups, b.classes)
    for seed in (0, 1, 7):
        sa, sb = a.split(seed), b.split(seed)
        assert (list(sa.train), list(sa.val), list(sa.test)) == (list(sb.train), list(sb.val), list(sb.test))
    for i in range(len(a)):
        assert a.sample_meta(i) == b.sample_meta(i)
        x, y = a[i], b[i]
        assert torch.equal(x.image, y.image) and x.group == y.group and x.label == y.label


@pytest.fixture()
def registry():
    return Registry(get_plugin_manager())


def test_busi_pack_round_trip_and_env_switch(tmp_path, registry, monkeypatch):
    _fake_busi(tmp_path / "data")
    monkeypatch.delenv(packs.ENV_PACKS, raising=False)
    original = registry.create(Kind.DATASET, "busi", root=str(tmp_path / "data"), image_size=32)
    path = packs.pack_dataset(registry, "busi", image_size=32, out_dir=tmp_path / "packs",
                              root=str(tmp_path / "data"))
    assert path.name.startswith("busi-32px-") and path.suffix == ".rbpack"
    _same(original, packs.load_pack(path))
    # Through the registry, as the runner and `train` create datasets: no files needed.
    monkeypatch.setenv(packs.ENV_PACKS, str(tmp_path / "packs"))
    _same(original, registry.create(Kind.DATASET, "busi", root="/nowhere", image_size=32, seed=5))
    # Another size or other options: a clear error that names the command making the pack.
    with pytest.raises(DataError, match=r"no pack for dataset 'busi' at 64 px.*robustbench-us data pack busi "
                                        r"--image-size 64"):
        registry.create(Kind.DATASET, "busi", image_size=64)
    with pytest.raises(DataError, match="task"):
        registry.create(Kind.DATASET, "busi", image_size=32, task="3class")


def test_busbra_pack_keeps_official_folds(tmp_path, registry, monkeypatch):
    _fake_busbra(tmp_path / "data")
    monkeypatch.delenv(packs.ENV_PACKS, raising=False)
    opts = {"split": "official-5fold", "fold": 2}
    original = registry.create(Kind.DATASET, "busbra", root=str(tmp_path / "data"), image_size=16, **opts)
    packs.pack_dataset(registry, "busbra", image_size=16, out_dir=tmp_path / "packs", root=str(tmp_path / "data"),
                       options=opts)
    monkeypatch.setenv(packs.ENV_PACKS, str(tmp_path / "packs"))
    rebuilt = registry.create(Kind.DATASET, "busbra", image_size=16, **opts)
    _same(original, rebuilt)
    assert (rebuilt.split_mode, rebuilt.fold) == ("official-5fold", 2)
    assert [rebuilt.ids[i] for i in rebuilt.split(0).test] == ["bus_0002-l", "bus_0002-r"]
    with pytest.raises(DataError, match="no pack for dataset 'busbra'"):  # fold 3 is another dataset
        registry.create(Kind.DATASET, "busbra", image_size=16, split="official-5fold", fold=3)


def test_damaged_or_foreign_packs_are_refused(tmp_path, registry, monkeypatch):
    _fake_busi(tmp_path / "data")
    monkeypatch.delenv(packs.ENV_PACKS, raising=False)
    path = packs.pack_dataset(registry, "busi", image_size=32, out_dir=tmp_path, root=str(tmp_path / "data"))
    with zipfile.ZipFile(path) as zf:
        head = json.loads(zf.read("pack.json"))
        items = {n: zf.read(n) for n in zf.namelist()}

    def rewrite(target, **changes):
        with zipfile.ZipFile(target, "w") as zf:
            for name, data in items.items():
                zf.writestr(name, json.dumps(head | changes) if name == "pack.json" else data)
        return target

    with pytest.raises(DataError, match='field "class" is \'collections:OrderedDict\', not a FileDataset class'):
        packs.load_pack(rewrite(tmp_path / "a.rbpack", **{"class": "collections:OrderedDict"}))
    with pytest.raises(DataError, match="manifest hash"):
        packs.load_pack(rewrite(tmp_path / "b.rbpack", manifest="0" * 64))
    with pytest.raises(DataError, match="version"):
        packs.read_head(rewrite(tmp_path / "c.rbpack", version=99))
    (tmp_path / "d.rbpack").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable dataset pack"):
        packs.read_head(tmp_path / "d.rbpack")
    with pytest.raises(DataError, match="only file datasets"):
        packs.write_pack(registry.create(Kind.DATASET, "phantom", image_size=32, count=10), tmp_path, options={})


def test_cli_pack_then_audit_from_pack(tmp_path, monkeypatch, capsys):
    _fake_busi(tmp_path / "data")
    monkeypatch.delenv(packs.ENV_PACKS, raising=False)
    assert cli_main(["data", "pack", "busi", "--image-size", "32", "--root", str(tmp_path / "data"),
                     "--out", str(tmp_path / "packs")]) == 0
    said = capsys.readouterr().out
    assert "busi, " in said and "at 32 px" in said
    audit_files = cli_main(["data", "audit", "busi", "--root", str(tmp_path / "data"), "--image-size", "32",
                            "--json"])
    from_files = json.loads(capsys.readouterr().out)
    monkeypatch.setenv(packs.ENV_PACKS, str(tmp_path / "packs"))
    assert cli_main(["data", "audit", "busi", "--image-size", "32", "--json"]) == audit_files
    from_pack = json.loads(capsys.readouterr().out)
    from_files.pop("seconds"), from_pack.pop("seconds")
    assert from_pack == from_files


class LocalFiles(FileDataset):
    """A dataset plugin's own FileDataset subclass (defined when its module is imported)."""


def _rewritten(path: Path, target: Path, **changes) -> Path:
    """A copy of the pack at ``path`` with fields of pack.json changed, as someone editing the file would."""
    with zipfile.ZipFile(path) as zf:
        items = {n: zf.read(n) for n in zf.namelist()}
    head = json.loads(items["pack.json"]) | changes
    with zipfile.ZipFile(target, "w") as zf:
        for name, data in items.items():
            zf.writestr(name, json.dumps(head) if name == "pack.json" else data)
    return target


def test_a_pack_naming_another_class_is_refused_before_any_import(tmp_path, registry, monkeypatch, reliability):
    _fake_busi(tmp_path / "data")
    monkeypatch.delenv(packs.ENV_PACKS, raising=False)
    path = packs.pack_dataset(registry, "busi", image_size=32, out_dir=tmp_path, root=str(tmp_path / "data"))
    edited = {value: _rewritten(path, tmp_path / f"edited-{i}.rbpack", **{"class": value})
              for i, value in enumerate(["this:Anything", "os:system", "antigravity:x", 42])}
    # In a fresh process, where nothing else has imported those modules: the refusal imports none of them.
    code = ("import json, sys\n"
            "from robustbench_us.data import packs\n"
            "from robustbench_us.errors import DataError\n"
            "said = {}\n"
            f"for path in {[str(p) for p in edited.values()]!r}:\n"
            "    try:\n"
            "        packs.load_pack(path)\n"
            "        said[path] = 'loaded'\n"
            "    except DataError as exc:\n"
            "        said[path] = str(exc)\n"
            f"ok = type(packs.load_pack({str(path)!r})).__name__\n"
            "busbra = packs._dataset_class('robustbench_us_plugins.busbra:BusbraDataset', 'x.rbpack').__name__\n"
            "imported = [m for m in ('this', 'antigravity') if m in sys.modules]\n"
            "print(json.dumps({'said': said, 'ok': ok, 'busbra': busbra, 'imported': imported}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["imported"] == [] and (result["ok"], result["busbra"]) == ("FileDataset", "BusbraDataset")
    assert "Zen of Python" not in out.stdout
    for value, edited_path in edited.items():
        message = result["said"][str(edited_path)]
        assert message.startswith(f"{edited_path}: field \"class\" is {value!r}, not a FileDataset class")
        assert "allowed: " in message and "robustbench_us.data.files:FileDataset" in message
        assert "robustbench_us_plugins.busbra:BusbraDataset" in message and "refusing to import it" in message
    # A plugin's own FileDataset subclass, once its module is loaded, still comes back from a pack.
    own = _rewritten(path, tmp_path / "own.rbpack", **{"class": f"{__name__}:LocalFiles"})
    assert type(packs.load_pack(own)) is LocalFiles
    reliability.row("Security", "a dataset pack whose \"class\" field is edited (this:Anything, os:system)",
                    "refused before anything is imported, naming the pack, the field and the allowed classes",
                    packs_refused=len(edited), modules_imported=len(result["imported"]))
