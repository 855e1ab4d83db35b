"""The workloads the performance benchmarks time, built once and shared by ratios.py and the pytest-benchmark files.

Every workload runs on the same model and the same images, so their times compare:

- ``bare``: a bare loop of forward + backward-to-the-input passes (cross-entropy), the floor
  any gradient attack pays per step;
- ``ifgsm`` / ``cell``: our I-FGSM plugin called per batch, and the runner's
  ``make_adversarial`` for one attack cell (batching, seeds, contract checks);
- ``art-bim``: ART's ``BasicIterativeMethod`` with the same ε, step and number of steps;
- ``gradcam``: our Grad-CAM plugin; ``pgc``: pytorch-grad-cam's ``GradCAM``; ``captum``:
  Captum's ``LayerGradCam`` upsampled to the input — all on the layer the model declares.

Plugins are created through the registry (``default_registry()``), as the runner does.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from robustbench_us.plugins import default_registry
from robustbench_us.runner import SuiteRunner
from robustbench_us.specs import Kind
from robustbench_us.suite import AttackEntry, DatasetEntry, ExplainerEntry, ModelEntry, Suite

Workload = Callable[[], Any]


@dataclass(frozen=True)
class Settings:
    """One benchmark configuration: model, image size, how much work, and the numeric mode."""

    device: str = "cpu"
    arch: str = "resnet18"
    size: int = 128
    images: int = 32
    batch: int = 32
    steps: int = 10
    eps: float = 4 / 255
    amp: str = "none"  # "bf16": autocast to bfloat16 for every workload
    channels_last: bool = False
    compile: bool = False  # torch.compile the model for every workload
    seed: int = 0

    @property
    def step_size(self) -> float:
        return 0.1 * self.eps  # ifgsm's default, given to ART as eps_step


#: The issue's CPU settings: ResNet-18, 128×128, 32 images, 10 steps.
CPU = Settings()
#: The GPU targets' settings: ResNet-50, 224×224, bf16 autocast, channels-last, large batches, 25 steps.
CUDA = Settings(device="cuda", arch="resnet50", size=224, images=512, batch=256, steps=25, amp="bf16",
                channels_last=True)


def settings_for(device: str, **overrides: Any) -> Settings:
    """The default settings of a device (``cpu`` or ``cuda``) with ``overrides`` (None values ignored)."""
    base = CUDA if device.startswith("cuda") else CPU
    return replace(base, device=device, **{k: v for k, v in overrides.items() if v is not None})


_BENCHES: dict[Settings, Bench] = {}


def bench_for(**overrides: Any) -> Bench:
    """A shared :class:`Bench` for the pytest-benchmark files, with ``overrides``.

    ``$ROBUSTBENCH_US_PERF_DEVICE`` picks the settings (``cpu``, the default, or ``cuda``);
    ``$ROBUSTBENCH_US_PERF_SIZE`` changes the image side (e.g. 32 for a quick smoke run).
    """
    import os

    size = os.environ.get("ROBUSTBENCH_US_PERF_SIZE")
    overrides.setdefault("size", int(size) if size else None)
    settings = settings_for(os.environ.get("ROBUSTBENCH_US_PERF_DEVICE", "cpu"), **overrides)
    if settings not in _BENCHES:
        _BENCHES[settings] = Bench(settings)
    return _BENCHES[settings]


class BenchNet(nn.Module):
    """A torchvision ResNet with a 2-way head and ImageNet normalisation inside (the model contract)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        self.net = getattr(torchvision.models, arch)(weights=None, num_classes=2)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)


class FloatLogits(nn.Module):
    """``model`` with its logits cast to float32 (for libraries that convert them to NumPy)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).float()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Bench:
    """The model, the images and every workload for one :class:`Settings`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self.device = torch.device(s.device)
        torch.manual_seed(s.seed)
        model = BenchNet(s.arch).to(self.device).eval()
        if s.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        # The attacks run ``run_model`` (compiled with ``compile``); explainers hook a layer, which a
        # compiled graph does not expose to autograd, so they and the runner's clean pass stay eager.
        self.run_model: nn.Module = torch.compile(model) if s.compile else model
        generator = torch.Generator().manual_seed(s.seed)
        x = torch.rand(s.images, 3, s.size, s.size, generator=generator)
        self.x = self._layout(x.to(self.device))
        self.y = torch.randint(0, 2, (s.images,), generator=generator).to(self.device)
        with torch.no_grad(), self.precision():
            self.target = torch.cat([model(self.x[b]).argmax(1) for b in self.batches()])
        self.registry = default_registry()
        self.notes: list[str] = []

    # ------------------------------------------------------------------ plumbing
    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.settings.channels_last else x

    def precision(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast when the settings ask for it, else nothing."""
        if self.settings.amp == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batches(self) -> Iterator[slice]:
        n, b = self.settings.images, self.settings.batch
        return (slice(i, min(n, i + b)) for i in range(0, n, b))

    def _each_batch(self, fn: Callable[[slice], Any]) -> Workload:
        def run() -> Any:
            with self.precision():
                return [fn(b) for b in self.batches()]
        return run

    # ------------------------------------------------------------------ floors
    def bare(self, passes: int, *, forward_only: int = 0) -> Workload:
        """``passes`` forward + backward-to-input passes per batch (plus ``forward_only`` no-grad forwards)."""
        model = self.run_model

        def one(b: slice) -> torch.Tensor:
            xb, yb = self.x[b], self.y[b]
            for _ in range(passes):
                inputs = xb.detach().requires_grad_(True)
                loss = F.cross_entropy(model(inputs), yb, reduction="sum")
                (grad,) = torch.autograd.grad(loss, inputs)
            with torch.no_grad():
                for _ in range(forward_only):
                    model(xb)
            return grad

        return self._each_batch(one)

    # ------------------------------------------------------------------ attacks
    def ifgsm(self) -> Workload:
        """Our ``ifgsm`` plugin's ``perturb`` per batch."""
        s = self.settings
        attack = self.registry.create(Kind.ATTACK, "ifgsm", eps=s.eps, steps=s.steps, step_size=s.step_size)
        return self._each_batch(lambda b: attack.perturb(self.run_model, self.x[b], self.y[b]))

    def runner(self) -> tuple[SuiteRunner, Any, AttackEntry]:
        """A :class:`SuiteRunner` for these settings, with the clean pass already done (Grad-CAM explainer)."""
        s = self.settings
        entry = AttackEntry("ifgsm", (s.eps,), {"steps": s.steps, "step_size": s.step_size})
        suite = Suite(name="perf", path=None, datasets=(DatasetEntry("perf"),), models=(ModelEntry(s.arch),),
                      explainers=(ExplainerEntry("gradcam"),), attacks=(entry,), seed=s.seed, n_images=s.images,
                      batch_size=s.batch, device=s.device)
        runner = SuiteRunner(suite, tempfile.mkdtemp(prefix="robustbench-us-perf-"), registry=self.registry,
                             progress=False)
        with self.precision():
            ev = runner.clean_pass(self.model, [f"img-{i}" for i in range(s.images)], self.x, self.y, None)
        return runner, ev, entry

    def cell(self, *, measure: bool = False) -> Workload:
        """One attack cell as the runner runs it: ``make_adversarial`` (and, with ``measure``, its metrics)."""
        runner, ev, entry = self.runner()

        def run() -> Any:
            with self.precision():
                x_adv, _, problems = runner.make_adversarial(self.run_model, ev, entry, self.settings.eps, None)
                assert not problems, problems
                if measure:
                    return runner.measure(self.model, ev, x_adv, ["gradcam"])
                return x_adv

        return run

    def art_bim(self) -> Workload:
        """ART's BasicIterativeMethod on the same model, ε, step and number of steps (numpy in, numpy out)."""
        from art.attacks.evasion import BasicIterativeMethod
        from art.estimators.classification import PyTorchClassifier

        s = self.settings
        # ART converts logits to NumPy, which has no bfloat16: hand it float32 logits so it can run under
        # the same autocast as ours.
        model = FloatLogits(self.run_model) if s.amp == "bf16" else self.run_model
        classifier = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=(3, s.size, s.size),
                                       nb_classes=2, clip_values=(0.0, 1.0),
                                       device_type="gpu" if self.device.type == "cuda" else "cpu")
        attack = BasicIterativeMethod(classifier, eps=s.eps, eps_step=s.step_size, max_iter=s.steps,
                                      batch_size=s.batch, verbose=False)
        x = self.x.float().cpu().numpy()
        y = F.one_hot(self.y, 2).float().cpu().numpy()

        def run() -> Any:
            with self.precision():
                return attack.generate(x, y=y)

        return run

    # ----------------------------------------------------------------- explainers
    def gradcam(self) -> Workload:
        """Our ``gradcam`` plugin per batch, on the model's predicted class."""
        explainer = self.registry.create(Kind.EXPLAINER, "gradcam")
        return self._each_batch(lambda b: explainer.explain(self.model, self.x[b], self.target[b]))

    def pgc(self) -> Workload:
        """pytorch-grad-cam's GradCAM on the same layer and targets (its hooks released after each call)."""
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        targets = [ClassifierOutputTarget(int(t)) for t in self.target.tolist()]
        layer = self.model.cam_layer

        def one(b: slice) -> Any:
            # It moves activations and gradients to NumPy, which has no bfloat16: under autocast a hook
            # registered before its own hands it the layer's output in float32.
            cast = layer.register_forward_hook(lambda _m, _i, out: out.float()) if self.settings.amp == "bf16" \
                else None
            try:
                with GradCAM(model=self.model, target_layers=[layer]) as cam:
                    return cam(input_tensor=self.x[b], targets=targets[b])
            finally:
                if cast is not None:
                    cast.remove()

        return self._each_batch(one)

    def captum(self) -> Workload:
        """Captum's LayerGradCam on the same layer, upsampled to the input (its usual use)."""
        from captum.attr import LayerAttribution, LayerGradCam

        method = LayerGradCam(self.model, self.model.cam_layer)

        def one(b: slice) -> torch.Tensor:
            maps = method.attribute(self.x[b], target=self.target[b], relu_attributions=True)
            return LayerAttribution.interpolate(maps, tuple(self.x.shape[-2:]), interpolate_mode="bilinear")

        return self._each_batch(one)


# ---------------------------------------------------------------------- timing
CLOCKS = ("wall", "cpu")


def time_once(fn: Workload, device: torch.device) -> dict[str, float]:
    """Seconds of one call, the device drained before and after: ``wall`` clock and this process's ``cpu`` time.

    On a CPU shared with other jobs the wall clock also counts the time the
    scheduler gave to them; the process's CPU time counts only its own work.
    """
    synchronize(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    synchronize(device)
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def interleaved(workloads: dict[str, Workload], device: torch.device, *, rounds: int, warmup: int = 1,
                prime: Workload | None = None) -> dict[str, dict[str, list[float]]]:
    """Seconds per round of each workload (``{clock: {name: [...]}}``), run back to back in a rotating order.

    On a shared machine the load drifts; running every workload once per round,
    next to the others, lets a ratio be taken within a round (see :func:`ratio`).
    ``warmup`` untimed rounds come first; ``prime`` (e.g. one cheap pass over the
    same shapes) runs once before anything, so no workload pays first-call setup.
    """
    if prime is not None:
        prime()
    for _ in range(warmup):
        for fn in workloads.values():
            fn()
    names = list(workloads)
    times: dict[str, dict[str, list[float]]] = {clock: {name: [] for name in names} for clock in CLOCKS}
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            for clock, seconds in time_once(workloads[name], device).items():
                times[clock][name].append(seconds)
    return times


def ratio(times: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of the within-round ratio ``numerator / denominator`` (one clock's times)."""
    return statistics.median(a / b for a, b in zip(times[numerator], times[denominator], strict=True))


def describe(settings: Settings) -> dict[str, Any]:
    """Settings plus the machine, for a results file."""
    import os
    import platform

    info = asdict(settings) | {"torch": torch.__version__, "threads": torch.get_num_threads(),
                               "cpu_count": os.cpu_count(), "platform": platform.platform()}
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    if settings.device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(settings.device))
    return info
