"""The runner: evaluate a suite's grid as DESIGN.md's "one run", one record per finished cell.

For each dataset × model there is one clean pass (logits, masks, heatmaps per
explainer); for each attack and ε the adversarial images are made once (once per
explainer only when the attack targets the explanation), then every explainer is
measured on them. Finished cells are skipped, so an interrupted run resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from robustbench_us import distributed
from robustbench_us.errors import ContractError, RecordError, RobustBenchError, StaleResultsError, SuiteError
from robustbench_us.faults import PLUGIN_FAILURES, CellTimeout, time_limit
from robustbench_us.plugins import Registry, default_registry
from robustbench_us.protocols import Dataset
from robustbench_us.records import Record, Status, base_provenance, read_record
from robustbench_us.specs import AttackTarget, Kind
from robustbench_us.store import ResultStore, safe_join, slug
from robustbench_us.suite import AttackEntry, DatasetEntry, ExplainerEntry, ModelEntry, Suite

logger = logging.getLogger(__name__)


def config_hash(config: dict[str, Any]) -> str:
    """Short sha256 of a configuration's canonical JSON."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Cell:
    """One point of the grid: dataset × model × explainer × attack × ε."""

    dataset: DatasetEntry
    model: ModelEntry
    explainer: ExplainerEntry
    attack: AttackEntry
    eps: float
    config: dict[str, Any]

    @property
    def cell_id(self) -> str:
        head = (f"{self.dataset.name}__{self.model.key}__{self.explainer.key}__{self.attack.display}"
                f"-{self.attack.region}__eps{self.eps * 255:.4g}")
        return f"{slug(head)}-{config_hash(self.config)}"


@dataclass
class RunSummary:
    """What a run did: counts and the records it wrote."""

    suite: str
    results_dir: Path
    written: list[Path] = field(default_factory=list)
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RobustBenchError(f"device {name!r} was asked for but CUDA is not available. Use device = \"cpu\".")
    return torch.device(name)


def expand_cells(suite: Suite, registry: Registry) -> list[Cell]:
    """Every cell of the grid, with the configuration that identifies it.

    Explainers that need a segmentation head are paired only with models that have one
    (the spec's ``has_segmentation``, or the model entry's ``segmentation`` option).
    A labelled explainer entry is named by its label (``explainer``) beside its registry
    name (``explainer_name``); an unlabelled one only by its name, as before labels
    existed, so the cell ids of earlier records stay the same.
    """
    cells = []
    for d in suite.datasets:
        for m in suite.models:
            model_spec = registry.get(Kind.MODEL, m.name)
            input_size = m.input_size or model_spec.input_size
            segments = bool(m.options.get("segmentation", model_spec.has_segmentation))
            for e in suite.explainers:
                if registry.get(Kind.EXPLAINER, e.name).requires_segmentation and not segments:
                    continue  # e.g. the segmentation map of a single-task model: not a cell of the grid
                for a in suite.attacks:
                    eps_values = a.eps or (registry.get(Kind.ATTACK, a.name).eps,)
                    for eps in eps_values:
                        config = {
                            "dataset": d.name, "dataset_options": d.options, "split_seed": d.split_seed,
                            "part": d.part, "model": m.key, "model_name": m.name, "model_options": m.options,
                            "checkpoint": m.checkpoint, "train": m.train, "image_size": input_size,
                            "explainer": e.key, "explainer_options": e.options, "attack": a.display,
                            "attack_name": a.name, "attack_options": a.options, "region": a.region,
                            "eps": eps, "eps_grey": eps * 255.0, "n_images": suite.n_images, "seed": suite.seed,
                        }
                        if e.label:
                            config["explainer_name"] = e.name
                        # Settings added after records existed join the configuration only when
                        # they differ from what those records were measured with.
                        if a.labels != "true":
                            config["labels"] = a.labels
                        if suite.quantize != "none":
                            config["quantize"] = suite.quantize
                        cells.append(Cell(d, m, e, a, eps, config))
    return cells


def _describe_failure(exc: BaseException, plugin: str) -> str:
    """A failed cell's error text: the project's own message, or the plugin's exception with its traceback.

    A timeout keeps its traceback too: it shows where the plugin was when time ran out.
    """
    if isinstance(exc, CellTimeout):
        return f"CellTimeout: {exc}\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if isinstance(exc, RobustBenchError):
        return f"{type(exc).__name__}: {exc}"
    return f"plugin {plugin!r} raised {type(exc).__name__}: {exc}\n" + "".join(
        traceback.format_exception(type(exc), exc, exc.__traceback__))


def _require_finite(tensor: torch.Tensor, what: str) -> None:
    if not bool(torch.isfinite(tensor).all()):
        raise ContractError(f"{what} contain NaN or Inf; the cell cannot be measured.")


def _explain(explainer: Any, model: nn.Module, x: torch.Tensor, target: torch.Tensor, what: str,
             where: str) -> torch.Tensor:
    """One batch of an explainer's maps, refused unless a tensor [N, H, W] at the input resolution."""
    maps = explainer.explain(model, x, target)
    expected = (x.shape[0], *x.shape[-2:])
    if not isinstance(maps, torch.Tensor):
        raise ContractError(f"{what} returned {type(maps).__name__} {where}, not a tensor; explain() must return "
                            f"maps [N, H, W] = {expected}.")
    if tuple(maps.shape) != expected:
        raise ContractError(f"{what} returned maps of shape {tuple(maps.shape)} {where}; expected {expected} "
                            "([N, H, W] at the input resolution). Drop the channel axis and upsample the maps "
                            "to the input size.")
    return maps


def _check_maps(maps: torch.Tensor, what: str, where: str) -> None:
    """Refuse maps that are not finite or not non-negative.

    Heatmaps are non-negative by contract, with no tolerance: every shipped explainer
    ends in ``abs``, ``relu`` or a probability, so even a tiny negative value means a
    plugin that does not meet the contract (and would skew rank and centroid metrics).
    """
    _require_finite(maps, f"maps of {what} {where}")
    low = float(maps.min()) if maps.numel() else 0.0
    if low < 0:
        raise ContractError(f"{what} returned maps with negative values (min {low:.3g}) {where}; heatmaps must be "
                            "non-negative. Clamp them at 0 or take the absolute value in explain().")


@dataclass
class _Evaluation:
    """Tensors of the chosen images and the clean pass over them."""

    ids: list[str]
    x: torch.Tensor
    y: torch.Tensor
    masks: torch.Tensor | None
    logits: torch.Tensor
    seg: torch.Tensor | None
    maps: dict[str, torch.Tensor]
    explainers: dict[str, Any]
    seconds: float
    errors: dict[str, str] = field(default_factory=dict)  # explainer key (label or name) → why it failed


def _rounded(values: torch.Tensor, digits: int = 6) -> list[float | None]:
    """A per-image tensor as JSON numbers (``digits`` decimals; null where not finite)."""
    return [round(v, digits) if math.isfinite(v) else None for v in values.detach().double().cpu().tolist()]


def quantize_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images rounded to the nearest of the 256 grey levels an 8-bit file can store, in [0, 1] units."""
    return (x * 255.0).round().clamp(0, 255) / 255.0


def select_indices(indices: Sequence[int], n_images: int, seed: int) -> list[int]:
    """A seeded subset of ``n_images`` indices (all when ``n_images`` is 0), in index order."""
    indices = list(indices)
    if n_images and len(indices) > n_images:
        rng = np.random.default_rng(seed)
        indices = sorted(rng.choice(indices, size=n_images, replace=False).tolist())
    return indices


def load_images(dataset: Dataset, indices: Sequence[int]) -> tuple[list[str], torch.Tensor, torch.Tensor,
                                                                    torch.Tensor | None]:
    """Stack the chosen samples: ids, images, labels and masks (None when any is missing)."""
    samples = [dataset[i] for i in indices]
    if not samples:
        raise RobustBenchError("the chosen split part holds no images; check the dataset and n_images.")
    x = torch.stack([s.image for s in samples]).float()
    y = torch.tensor([int(s.label) for s in samples], dtype=torch.long)
    masks = None
    if all(s.mask is not None for s in samples):
        masks = torch.stack([torch.as_tensor(s.mask).bool() for s in samples])
    return [s.id for s in samples], x, y, masks


class SuiteRunner:
    """Runs one suite into one results folder."""

    def __init__(self, suite: Suite, results_dir: str | Path = "results", *, registry: Registry | None = None,
                 progress: bool = True) -> None:
        self.suite = suite
        self.registry = registry or default_registry()
        self.store = ResultStore(results_dir, suite.name)
        self.progress = progress
        # Under torchrun, join the process group and shard every batch loop across the ranks.
        self.device = distributed.init_from_env(resolve_device(suite.device))
        self.provenance = base_provenance() | {"device": str(self.device)} | distributed.provenance()
        self.batches = distributed.batch_sizer(suite.batch_size, self.device)
        # SIGALRM fires per process; under torchrun one rank timing out alone would desynchronise
        # the collectives, so the limit applies only to single-process runs (docs/performance.md).
        self.cell_timeout = suite.cell_timeout if not distributed.is_active() else None
        # Maps, explainers and errors are keyed by the entry's key: one explainer may appear
        # twice with other options (under a label), and each entry keeps its own maps.
        self.explainer_entries: dict[str, ExplainerEntry] = {}
        for entry in suite.explainers:
            if entry.key in self.explainer_entries:
                raise SuiteError(f"{suite.path or suite.name}: explainer {entry.key!r} appears twice; give one of "
                                 "them a distinct label = \"...\" so their maps and records stay apart.")
            self.explainer_entries[entry.key] = entry

    # ----------------------------------------------------------------- models
    def prepare_model(self, entry: ModelEntry, dataset_entry: DatasetEntry, dataset: Dataset,
                      input_size: int, manifest: str) -> tuple[nn.Module, dict[str, Any]]:
        """Build the model, then load its checkpoint or train it (training is cached in the results folder)."""
        from robustbench_us.checkpoints import load_checkpoint, save_checkpoint
        from robustbench_us.training import TrainConfig, train_model

        torch.manual_seed(self.suite.seed)
        model = self.registry.create(Kind.MODEL, entry.name, input_size=input_size, **entry.options)
        info: dict[str, Any] = {"model_init": getattr(model, "init", "scratch")}
        if entry.checkpoint is not None:
            card = load_checkpoint(model, entry.checkpoint, expected_sha256=entry.sha256)
            info |= {"model_init": f"checkpoint:{entry.checkpoint}", "checkpoint_sha256": card.get("sha256")}
        elif entry.train is not None:
            settings = {"seed": self.suite.seed} | entry.train
            try:
                config = TrainConfig(**settings)
            except TypeError as exc:
                fields = ", ".join(TrainConfig.__dataclass_fields__)
                raise SuiteError(f"{self.suite.path}: models[{entry.name}].train: {exc}. Allowed keys: {fields}.") \
                    from None
            key = {"dataset": dataset_entry.name, "options": dataset_entry.options, "split_seed":
                   dataset_entry.split_seed, "manifest": manifest, "model": entry.name,
                   "model_options": entry.options, "input_size": input_size, "train": settings}
            path = self.store.root / "checkpoints" / f"{slug(dataset_entry.name)}__{slug(entry.key)}-{config_hash(key)}"
            if Path(f"{path}.safetensors").is_file():
                card = load_checkpoint(model, path)
                logger.info("loaded cached checkpoint %s", path)
            else:
                split = dataset.split(dataset_entry.split_seed)
                report = train_model(model, [(dataset, split)], config, device=self.device, progress=self.progress,
                                     resume_path=f"{path}.resume.pt")  # an interrupted run continues here
                card = {"architecture": entry.name, "model_options": entry.options, "input_size": input_size,
                        "dataset": dataset_entry.name,
                        "dataset_manifest": manifest, "split_seed": dataset_entry.split_seed,
                        "recipe": settings, "init": info["model_init"]} | report.card_fields(self.device)
                card["sha256"] = save_checkpoint(model, path, card)
            info |= {"checkpoint_sha256": card.get("sha256"), "checkpoint": f"{path}.safetensors",
                     "train_test_metrics": card.get("test_metrics")}
        else:
            raise SuiteError(f"{self.suite.path}: model {entry.name!r} has neither checkpoint nor train; an "
                             "untrained model would make every number meaningless. Add checkpoint = \"...\" or "
                             "a [models.train] table.")
        return model.to(self.device).eval(), info

    # ------------------------------------------------------------------ clean
    def clean_pass(self, model: nn.Module, ids: list[str], x: torch.Tensor, y: torch.Tensor,
                   masks: torch.Tensor | None) -> _Evaluation:
        """Logits, masks and heatmaps of the clean images, once per dataset × model.

        An explainer that raises, runs past ``cell_timeout`` or returns maps against the
        contract is noted in ``errors`` (its cells fail); an exception raised here comes
        from the model (its forward, or NaN logits).
        """
        start = time.perf_counter()
        run = self.batches.run
        x, y = x.to(self.device), y.to(self.device)
        masks = masks.to(self.device) if masks is not None else None
        with time_limit(self.cell_timeout, "the model's forward on the clean images"), torch.no_grad():
            logits = run(lambda s: model(x[s]), len(x))
            seg = run(lambda s: model.segment(x[s]), len(x)) if getattr(model, "has_segmentation", False) else None
        _require_finite(logits, "the model's clean logits")
        pred = logits.argmax(1)
        explainers, maps, errors = {}, {}, {}
        for key, entry in self.explainer_entries.items():
            what = f"explainer {key!r} (plugin {self._plugin(key)!r})"
            try:
                explainer = self.registry.create(Kind.EXPLAINER, entry.name, **entry.options)
                explainers[key] = explainer
                with time_limit(self.cell_timeout, f"{what} on clean images"):
                    maps[key] = run(lambda s: _explain(explainer, model, x[s], pred[s], what, "on clean images"),
                                    len(x))
                _check_maps(maps[key], what, "on clean images")
            except PLUGIN_FAILURES as exc:  # noqa: BLE001 - recorded in each of this explainer's cells
                maps.pop(key, None)
                errors[key] = _describe_failure(exc, self._plugin(key))
        return _Evaluation(ids, x, y, masks, logits, seg, maps, explainers, time.perf_counter() - start, errors)

    # ----------------------------------------------------------------- attack
    def _region(self, attack: AttackEntry, masks: torch.Tensor | None) -> torch.Tensor | None:
        if attack.region == "all":
            return None
        if masks is None:
            raise RobustBenchError(f"attack {attack.display!r} asks for region={attack.region!r} but the dataset "
                                   "has no lesion masks. Use region = \"all\".")
        return masks if attack.region == "inside" else ~masks

    def make_adversarial(self, model: nn.Module, ev: _Evaluation, attack_entry: AttackEntry, eps: float,
                         explainer: Any | None) -> tuple[torch.Tensor, float, list[str]]:
        """Adversarial images for every chosen image, the seconds it took, and any contract violations."""
        from robustbench_us.contracts import check_adversarial

        attack = self.registry.create(Kind.ATTACK, attack_entry.name, eps=eps, **attack_entry.options)
        # The budget is the cell's ε in the norm the spec declares, never what the attack
        # object says about itself: an object reporting a larger eps (or no norm) would
        # otherwise grant itself a larger budget.
        norm = self.registry.get(Kind.ATTACK, attack_entry.name).norm
        region = self._region(attack_entry, ev.masks)
        problems: list[str] = []

        # The y the attack is given: the true label, or the model's own clean prediction.
        labels = ev.logits.argmax(1) if attack_entry.labels == "predicted" else ev.y

        def perturb(s: slice) -> torch.Tensor:
            # Seeded by the batch's first image, so a resumed run draws the same random starts.
            generator = torch.Generator(device=self.device).manual_seed(self.suite.seed * 100_003 + s.start)
            xb = ev.x[s]
            before = xb.clone()
            x_adv = attack.perturb(model, xb, labels[s], explainer=explainer,
                                   mask=region[s] if region is not None else None, generator=generator)
            _require_finite(x_adv, f"the adversarial images of attack {attack_entry.display!r}")
            problems.extend(check_adversarial(xb, x_adv, norm=norm, eps=float(eps), x_before=before))
            return x_adv.detach()

        start = time.perf_counter()
        x_adv = self.batches.run(perturb, len(ev.x))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return x_adv, time.perf_counter() - start, distributed.all_gather_list(problems)

    def measure(self, model: nn.Module, ev: _Evaluation, x_adv: torch.Tensor,
                explainer_names: Sequence[str]) -> tuple[dict[str, dict[str, float] | str], dict[str, float], dict]:
        """Metrics of each explainer on the adversarial images, or the error text of one that failed.

        ``explainer_names`` are the entries' keys (label or name). Each explainer runs
        under its own ``cell_timeout``, so one failing or hanging explainer fails only its
        own cells; an exception raised here comes from the model.
        """
        from robustbench_us import metrics

        run = self.batches.run
        start = time.perf_counter()
        with time_limit(self.cell_timeout, "the model's forward on the adversarial images"), torch.no_grad():
            logits_adv = run(lambda s: model(x_adv[s]), len(x_adv))
            seg_adv = run(lambda s: model.segment(x_adv[s]), len(x_adv)) if ev.seg is not None else None
        _require_finite(logits_adv, "the model's logits on the adversarial images")
        pred_clean, pred_adv = ev.logits.argmax(1), logits_adv.argmax(1)
        flipped = pred_clean != pred_adv
        table = {"id": list(ev.ids), "label": ev.y.tolist(), "pred_clean": pred_clean.tolist(),
                 "pred_adv": pred_adv.tolist(), "p_malignant_clean": _rounded(ev.logits.softmax(1)[:, 1]),
                 "p_malignant_adv": _rounded(logits_adv.softmax(1)[:, 1])}
        per_image: dict[str, dict[str, list[Any]]] = {}
        common = {"n_images": float(len(ev.x))}  # how many were used (the config holds how many were asked for)
        common |= metrics.prediction_metrics(ev.y, ev.logits, logits_adv, seed=self.suite.seed)
        common |= metrics.perturbation_metrics(ev.x, x_adv)
        common |= metrics.confidence_metrics(ev.logits, logits_adv)
        if ev.seg is not None and ev.masks is not None:
            common |= metrics.segmentation_metrics(ev.seg, seg_adv, ev.masks)
        forward_seconds = time.perf_counter() - start
        per_explainer: dict[str, dict[str, float] | str] = {}
        seconds, maps_adv = {}, {}
        for name in explainer_names:
            if name in ev.errors:  # this explainer already failed on the clean images
                per_explainer[name] = ev.errors[name]
                continue
            start = time.perf_counter()
            explainer = ev.explainers[name]
            what = f"explainer {name!r} (plugin {self._plugin(name)!r})"
            try:
                with time_limit(self.cell_timeout, f"{what} on adversarial images"):
                    maps_adv[name] = run(lambda s: _explain(explainer, model, x_adv[s], pred_adv[s], what,
                                                            "on adversarial images"), len(x_adv))
                _check_maps(maps_adv[name], what, "on adversarial images")
                moved = metrics.explanation_per_image(ev.maps[name], maps_adv[name])
                per_explainer[name] = common | metrics.explanation_metrics(
                    ev.maps[name], maps_adv[name], flipped, masks=ev.masks, per_image=moved,
                    correct=pred_clean == ev.y)
            except PLUGIN_FAILURES as exc:  # noqa: BLE001 - one explainer failing must not fail the others
                per_explainer[name] = _describe_failure(exc, self._plugin(name))
                maps_adv.pop(name, None)
                continue
            per_image[name] = table | {key: _rounded(moved[key])
                                       for key in ("centroid_px", "spearman", "topk_intersection")}
            seconds[name] = time.perf_counter() - start + forward_seconds
        return per_explainer, seconds, {"logits_adv": logits_adv, "maps_adv": maps_adv, "per_image": per_image}

    def _plugin(self, explainer: str) -> str:
        """The plugin of an explainer entry, by its key (label or name)."""
        entry = self.explainer_entries.get(explainer)
        return self.registry.get(Kind.EXPLAINER, entry.name if entry is not None else explainer).plugin

    def _model_failure(self, entry: ModelEntry, where: str, exc: BaseException) -> str:
        """A failed cell's error text when its model failed, naming the model and its plugin."""
        return self._group_failure(Kind.MODEL, entry.name, entry.key, where, exc)

    def _dataset_failure(self, entry: DatasetEntry, where: str, exc: BaseException) -> str:
        """A failed cell's error text when its dataset failed, naming the dataset and its plugin."""
        return self._group_failure(Kind.DATASET, entry.name, entry.name, where, exc)

    def _group_failure(self, kind: Kind, name: str, shown: str, where: str, exc: BaseException) -> str:
        plugin = self.registry.get(kind, name).plugin
        detail = f"{kind} {shown!r} (plugin {plugin!r}) failed {where}: " + _describe_failure(exc, plugin)
        logger.error("cells of %s %r failed: %s", kind, shown, detail.splitlines()[0])
        return detail

    def plugin_versions(self, cell: Cell) -> dict[str, dict[str, str | None]]:
        """Per kind, the plugin that provides the cell's dataset, model, explainer and attack, with its
        distribution and version (None for a local plugin): recorded, and compared on later runs."""
        out: dict[str, dict[str, str | None]] = {}
        for kind, name in ((Kind.DATASET, cell.dataset.name), (Kind.MODEL, cell.model.name),
                           (Kind.EXPLAINER, cell.explainer.name), (Kind.ATTACK, cell.attack.name)):
            plugin = self.registry.get(kind, name).plugin
            info = self.registry.infos.get(plugin)
            out[str(kind)] = {"plugin": plugin, "distribution": getattr(info, "distribution", None),
                              "version": getattr(info, "version", None)}
        return out

    # -------------------------------------------------------------------- run
    def run(self) -> RunSummary:
        """Run every unfinished cell; returns what was written, skipped, failed or invalid.

        A cell is finished when it has an ok or invalid record measured with the plugin
        versions loaded now; a record made with another version of one of its plugins is
        moved to ``records/superseded/`` and the cell measured again (records without
        version information, written before it was recorded, count as finished).
        """
        cells = expand_cells(self.suite, self.registry)
        summary = RunSummary(self.suite.name, self.store.root)
        if distributed.is_writer():
            removed = self.store.remove_stale_temporaries()  # what runs killed mid-write left behind
            if removed:
                logger.info("removed %d temporary file(s) left by killed runs in %s", len(removed), self.store.root)
        versions = {cell.cell_id: self.plugin_versions(cell) for cell in cells}
        pending = [c for c in cells if not self.store.is_finished(c.cell_id, versions[c.cell_id])]
        summary.skipped = len(cells) - len(pending)
        if summary.skipped:
            logger.info("%d of %d cells already finished; skipping them", summary.skipped, len(cells))
        bar = tqdm(total=len(pending), desc=f"{self.suite.name} cells", file=sys.stderr,
                   disable=not self.progress or not distributed.is_writer(), unit="cell")
        try:
            for d in self.suite.datasets:
                for m in self.suite.models:
                    group = [c for c in pending if c.dataset is d and c.model is m]
                    if not group:
                        continue
                    with distributed.writer_lock(self.store.lock(slug(f"{d.name}__{m.key}"))):
                        # Another run may have finished some of these while we waited for the lock.
                        # Under torchrun every rank takes rank 0's view, which holds the lock.
                        unfinished = distributed.from_writer(
                            [self._unfinished(c, versions[c.cell_id]) for c in group] if distributed.is_writer()
                            else None)
                        todo = [c for c, keep in zip(group, unfinished) if keep]
                        summary.skipped += len(group) - len(todo)
                        bar.update(len(group) - len(todo))
                        if todo:
                            done = [c for c in cells if c.dataset is d and c.model is m and c not in todo]
                            self._run_group(d, m, todo, summary, bar, done)
        finally:
            bar.close()
        return summary

    def _unfinished(self, cell: Cell, versions: dict[str, dict[str, str | None]]) -> bool:
        """Whether ``cell`` must be measured; a final record made with other plugin versions is moved aside."""
        changed = self.store.changed_plugins(cell.cell_id, versions)  # one read of the record
        if changed is None:  # no ok or invalid record
            return True
        if changed:
            moved = self.store.supersede(cell.cell_id)
            logger.warning("cell %s was measured with other plugin code (%s); measuring it again (the old record "
                           "is kept as %s)", cell.cell_id, "; ".join(changed), moved)
            return True
        return False

    def _check_same_inputs(self, d: DatasetEntry, m: ModelEntry, done: list[Cell], current: dict[str, Any]) -> None:
        """Refuse to add cells measured on other data or other weights to a group's finished ones.

        A cell id names the configuration, not the files: the same dataset name read from another
        folder, or a checkpoint retrained to different weights, keeps every id. The finished
        records' provenance tells, and one table must not mix the two.
        """
        for cell in done:
            path = self.store.path_of(cell.cell_id)
            try:
                before = read_record(path)["provenance"]
            except (RecordError, OSError):
                continue
            for key, what, thing in (("dataset_manifest", f"The data of dataset {d.name!r}", "data"),
                                     ("checkpoint_sha256", f"The weights of model {m.key!r}", "checkpoint")):
                old, new = before.get(key), current.get(key)
                if old and new and old != new:
                    raise StaleResultsError(
                        f"{what} changed since the finished cells of this group were measured: {key} was "
                        f"{old[:12]}… in {path}, it is {new[:12]}… now. New cells would sit in one table with old "
                        f"ones measured on something else. Restore the earlier {thing}, run into another results "
                        f"folder (--results DIR), or move this group's {len(done)} finished "
                        f"record{'s' * (len(done) != 1)} out of "
                        f"{self.store.records_dir} to measure all of them again.")

    def _run_group(self, d: DatasetEntry, m: ModelEntry, cells: list[Cell], summary: RunSummary, bar: tqdm,
                   done: list[Cell] | None = None) -> None:
        input_size = cells[0].config["image_size"]
        plugins = {str(kind): self.registry.get(kind, name).plugin for kind, name in
                   ((Kind.DATASET, d.name), (Kind.MODEL, m.name))}
        # A dataset that cannot be built (a missing folder, a plugin that raises) fails this
        # group's cells, named in each record; the run goes on with the next group.
        try:
            dataset = self.registry.create(Kind.DATASET, d.name, root=d.root, image_size=input_size,
                                           seed=self.suite.seed, **d.options)
            manifest = dataset.manifest_hash()
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - a dataset plugin failed; its cells record it
            self._fail_all(cells, self.provenance | {"plugins": plugins}, summary, bar,
                           self._dataset_failure(d, "to load", exc))
            return
        self._check_same_inputs(d, m, done or [], {"dataset_manifest": manifest})  # before any training
        group_provenance = {"dataset_manifest": manifest, "plugins": plugins}
        # A model that cannot be built, loaded or trained, raises in its forward or gives NaN
        # logits fails this group's cells, named in each record; the run goes on with the next.
        try:
            with distributed.writer_first():  # under torchrun rank 0 trains; the others load its checkpoint
                model, model_info = self.prepare_model(m, d, dataset, input_size, manifest)
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - a model plugin failed; its cells record it
            self._fail_all(cells, self.provenance | group_provenance, summary, bar,
                           self._model_failure(m, "to build, load or train", exc))
            return
        self._check_same_inputs(d, m, done or [], model_info)
        provenance = self.provenance | model_info | group_provenance
        try:
            indices = select_indices(dataset.split(d.split_seed).part(d.part), self.suite.n_images, self.suite.seed)
            ids, x, y, masks = load_images(dataset, indices)
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - a sample the dataset cannot give
            self._fail_all(cells, provenance, summary, bar, self._dataset_failure(d, "to give its images", exc))
            return
        if self.suite.quantize == "uint8":
            x = quantize_uint8(x)  # what a stored 8-bit image holds; resizing leaves values between the steps
        try:
            ev = self.clean_pass(model, ids, x, y, masks)
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - explainer failures stay inside clean_pass
            self._fail_all(cells, provenance, summary, bar, self._model_failure(m, "on the clean images", exc))
            return
        by_attack: dict[tuple[int, float], list[Cell]] = {}
        for cell in cells:
            by_attack.setdefault((self.suite.attacks.index(cell.attack), cell.eps), []).append(cell)
        for (_, eps), attack_cells in by_attack.items():
            attack_entry = attack_cells[0].attack
            spec = self.registry.get(Kind.ATTACK, attack_entry.name)
            targets_map = spec.target == AttackTarget.EXPLANATION
            # An explanation attack needs adversarial images per explainer; others share one set.
            generations = [[c] for c in attack_cells] if targets_map else [attack_cells]
            for gen_cells in generations:
                self._run_generation(model, ev, attack_entry, eps, gen_cells, targets_map, provenance, summary)
                bar.update(len(gen_cells))

    def _fail_all(self, cells: list[Cell], provenance: dict[str, Any], summary: RunSummary, bar: tqdm,
                  error: str) -> None:
        for cell in cells:
            self._write(cell, Status.FAILED, {}, {}, provenance, summary, error=error)
        bar.update(len(cells))

    def _run_generation(self, model: nn.Module, ev: _Evaluation, attack_entry: AttackEntry, eps: float,
                        cells: list[Cell], targets_map: bool, provenance: dict[str, Any],
                        summary: RunSummary) -> None:
        plugin = self.registry.get(Kind.ATTACK, attack_entry.name).plugin
        timing_base = {"clean_pass_seconds": ev.seconds}
        first = cells[0].explainer.key
        if targets_map and first in ev.errors:
            self._write(cells[0], Status.FAILED, {}, timing_base, provenance, summary, error=ev.errors[first])
            return
        explainer = ev.explainers[first] if targets_map else None
        try:
            if explainer is not None and not getattr(explainer, "differentiable", False):
                raise ContractError(f"attack {attack_entry.display!r} targets the explanation but explainer "
                                    f"{first!r} is not differentiable; pair it with a "
                                    "differentiable explainer (robustbench-us list explainers).")
            with time_limit(self.cell_timeout, f"attack {attack_entry.display!r} (plugin {plugin!r})"):
                x_adv, attack_seconds, problems = self.make_adversarial(model, ev, attack_entry, eps, explainer)
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - a plugin failed; record it, keep the run going
            detail = _describe_failure(exc, plugin)
            logger.error("cell failed: %s", detail.splitlines()[0])
            for cell in cells:
                self._write(cell, Status.FAILED, {}, timing_base, provenance, summary, error=detail)
            return
        if problems:
            reason = f"attack {attack_entry.display!r} (plugin {plugin!r}) broke the contract: " + "; ".join(
                sorted(set(problems))[:5])
            for cell in cells:
                self._write(cell, Status.INVALID, {}, timing_base, provenance, summary, error=reason)
            return
        pred_unrounded = None
        try:
            if self.suite.quantize == "uint8":
                x_adv, pred_unrounded = self._round_adversarial(model, x_adv)
            per_explainer, seconds, adv = self.measure(model, ev, x_adv, [c.explainer.key for c in cells])
        except PLUGIN_FAILURES as exc:  # noqa: BLE001 - explainer failures stay inside measure
            detail = self._model_failure(cells[0].model, f"on the adversarial images of attack "
                                                         f"{attack_entry.display!r}", exc)
            for cell in cells:
                self._write(cell, Status.FAILED, {}, timing_base, provenance, summary, error=detail)
            return
        rounding: dict[str, float] = {}
        if pred_unrounded is not None:  # measure() has the rounded images' logits
            from robustbench_us import metrics

            rounding = metrics.rounding_metrics(ev.logits.argmax(1), pred_unrounded, adv["logits_adv"].argmax(1))
        for cell in cells:
            key = cell.explainer.key
            result = per_explainer[key]
            if isinstance(result, str):
                self._write(cell, Status.FAILED, {}, timing_base, provenance, summary, error=result)
                continue
            result = result | rounding
            timing = timing_base | {"attack_seconds": attack_seconds, "adversarial_eval_seconds": seconds[key]}
            figures = (self._figures(cell, ev, x_adv, adv)
                       if self.suite.figures_at(cell.eps) and distributed.is_writer() else [])
            self._write(cell, Status.OK, result, timing, provenance, summary, figures=figures,
                        per_image=adv["per_image"][key])

    def _round_adversarial(self, model: nn.Module, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The adversarial images on the 8-bit grid, and the model's predictions on them before rounding.

        The clean images are on the grid already and every L∞ budget is whole grey levels
        (checked when the suite is read), so rounding never leaves the ε-ball.
        """
        with time_limit(self.cell_timeout, "the model's forward on the unrounded adversarial images"), \
                torch.no_grad():
            logits_raw = self.batches.run(lambda s: model(x_adv[s]), len(x_adv))
        _require_finite(logits_raw, "the model's logits on the unrounded adversarial images")
        return quantize_uint8(x_adv), logits_raw.argmax(1)

    def _figures(self, cell: Cell, ev: _Evaluation, x_adv: torch.Tensor, adv: dict[str, Any]) -> list[str]:
        """The study's panels for this cell (label kept & map moved; label flipped), relative to the suite folder."""
        from robustbench_us.figures import write_cell_figures

        key = cell.explainer.key
        out = safe_join(self.store.root, "figures", cell.cell_id)
        paths = write_cell_figures(out, ev.x, x_adv, ev.maps[key], adv["maps_adv"][key], ev.logits,
                                   adv["logits_adv"], ev.ids)
        return [p.relative_to(self.store.root).as_posix() for p in paths]

    def _write(self, cell: Cell, status: Status, metrics: dict[str, float], timing: dict[str, float],
               provenance: dict[str, Any], summary: RunSummary, *, error: str | None = None,
               figures: list[str] | None = None, per_image: dict[str, list[Any]] | None = None) -> None:
        # "plugins" names each plugin (as records always have); "plugin_versions" adds where it
        # came from, so a later run with an upgraded plugin measures the cell again.
        prov = provenance | {"plugins": provenance["plugins"] | {
            "explainer": self.registry.get(Kind.EXPLAINER, cell.explainer.name).plugin,
            "attack": self.registry.get(Kind.ATTACK, cell.attack.name).plugin},
            "plugin_versions": self.plugin_versions(cell)}
        record = Record(suite=self.suite.name, cell_id=cell.cell_id, status=status, config=cell.config,
                        metrics=metrics, timing=timing, provenance=prov, error=error, figures=figures or [],
                        per_image=per_image)
        # Under torchrun only rank 0 writes; the other ranks note the path it writes to.
        path = self.store.write(record) if distributed.is_writer() else self.store.path_of(cell.cell_id)
        summary.written.append(path)
        if status == Status.FAILED:
            summary.failed.append(cell.cell_id)
        elif status == Status.INVALID:
            summary.invalid.append(cell.cell_id)


def run_suite(suite: Suite, results_dir: str | Path = "results", *, registry: Registry | None = None,
              progress: bool = True) -> RunSummary:
    """Run ``suite`` into ``results_dir``; finished cells are skipped."""
    return SuiteRunner(suite, results_dir, registry=registry, progress=progress).run()
