"""Any timm architecture as a benchmark model: ``timm:<name>``, e.g. ``timm:resnet18``, ``timm:convnext_tiny``.

The backbone is ``timm.create_model(<name>, pretrained=False, num_classes=0)``; this
plugin adds the [0, 1] → mean/std normalisation of the architecture's pretrained
config, a 2-way linear head on timm's pooled features (``forward_head(pre_logits=True)``)
and, with ``segmentation=True``, the same lesion-mask decoder as ``resnet50-mtl``
(Conv+ReLU → 2× nearest upsampling → BatchNorm blocks, one per factor of two
between the feature map and the input).

``cam_layer`` is found generically: a module whose output *is* the tensor
``forward_features`` returns (timm's last ``feature_info`` stage when that is one,
else the outermost such module, never an ``Identity``): ``layer4`` for ResNets,
``stages.3`` for ConvNeXt, ``bn2`` for EfficientNets — the activation the head pools.
``cam_layout`` says how that activation is laid out: ``"nchw"`` (CNNs), ``"nhwc"``
(e.g. Swin) or ``"nlc"`` (vision transformers' tokens; no segmentation head then), and
token models give ``cam_grid``, their patch grid; the CAM explainers read both. A ViT
whose head reads the class token hooks the last block's ``norm1`` instead, since the
patch tokens of the final norm get no gradient there.

Options: ``segmentation`` (bool), ``pretrained`` (``None`` = from scratch, ``"imagenet"``
= timm's weights from the local Hugging Face / torch hub cache, or a file path), and
any keyword timm's constructor takes via ``timm_kwargs``. Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import logging
import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustbench_us import ModelSpec, hookimpl
from robustbench_us.errors import CheckpointError, PluginError
from robustbench_us_plugins.resnet import IMAGENET_MEAN, IMAGENET_STD, MaskDecoder, Normalize, decoder_widths

logger = logging.getLogger(__name__)


def _create_backbone(variant: str, input_size: int, timm_kwargs: dict[str, Any],
                     weights: Path | None = None) -> nn.Module:
    """``timm.create_model`` without a head; ``weights`` (a local file) are loaded strictly first."""
    import timm

    if not timm.is_model(variant):
        close = difflib.get_close_matches(variant, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise PluginError(f"Unknown timm architecture {variant!r} (model 'timm:{variant}').{hint} "
                          "See timm.list_models() for the names.")
    kwargs: dict[str, Any] = {"pretrained": False, **timm_kwargs}
    if weights is None:
        kwargs["num_classes"] = 0
    try:
        # Transformers fix their input size at construction; CNNs reject img_size.
        backbone = timm.create_model(variant, img_size=input_size, **kwargs)
    except TypeError:
        backbone = timm.create_model(variant, **kwargs)
    if weights is not None:
        _load_weights(backbone, variant, weights)
        backbone.reset_classifier(0)
    return backbone


def _load_weights(backbone: nn.Module, variant: str, weights: Path) -> None:
    """Load a local weights file with timm's loader, strictly (classifier included), never from the network.

    The backbone still has its pretrained-size classifier here: timm relaxes ``strict``
    when the class count differs, which would let a wrong file load silently.
    """
    import sys

    from timm.models import load_pretrained, model_entrypoint

    cfg = dict(getattr(backbone, "pretrained_cfg", {}) or {})
    cfg.update(file=str(weights), source="", hf_hub_id=None, url=None)  # the file, and nothing else
    module = sys.modules.get(model_entrypoint(variant).__module__)
    filter_fn = getattr(module, "checkpoint_filter_fn", None)  # what timm's builder passes for this family
    try:
        load_pretrained(backbone, pretrained_cfg=cfg, num_classes=cfg.get("num_classes", 1000), strict=True,
                        filter_fn=filter_fn)
    except (RuntimeError, KeyError, ValueError, OSError, AssertionError) as exc:
        raise CheckpointError(f"Pretrained weights {weights} do not fit timm:{variant} ({type(exc).__name__}: "
                              f"{str(exc)[:400]}). Give ImageNet weights of the same architecture.") from exc


def _imagenet_file(variant: str) -> Path:
    """timm's pretrained weight file for ``variant`` from the local caches only (no network)."""
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(variant)
    looked: list[str] = []
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = ([cfg.hf_hub_filename] if cfg.hf_hub_filename else []) + ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            found = try_to_load_from_cache(hub_id, filename)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
            looked.append(f"Hugging Face cache {hub_id}/{filename}")
    url = getattr(cfg, "url", None)
    if url:
        candidate = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
        if candidate.is_file():
            return candidate
        looked.append(str(candidate))
    if not looked:
        raise CheckpointError(f"timm has no ImageNet weights for {variant!r}; leave pretrained unset or pass a file.")
    raise CheckpointError(f"ImageNet weights for timm:{variant} are not cached here and this machine does not "
                          f"download. Looked in: {'; '.join(looked)}. Download them elsewhere "
                          f"(timm.create_model({variant!r}, pretrained=True) fills the cache), copy the file here "
                          "and pass pretrained=\"/path/to/model.safetensors\", or leave pretrained unset.")


def _weights_path(variant: str, pretrained: str) -> Path:
    path = _imagenet_file(variant) if pretrained == "imagenet" else Path(pretrained).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Pretrained weights file {path} for timm:{variant} does not exist. Check the path, "
                              "or leave pretrained unset to start from scratch.")
    return path


def _probe(backbone: nn.Module, input_size: int) -> tuple[str, torch.Size, int]:
    """The cam layer's name, the shape of ``forward_features``' output and the width of the pooled features.

    The cam layer is the module producing ``forward_features``' output: timm's last
    ``feature_info`` stage when it is one, else the outermost such module.
    """
    produced: list[tuple[str, torch.Tensor]] = []
    handles = [module.register_forward_hook(lambda m, i, o, name=name: produced.append((name, o)))
               for name, module in backbone.named_modules() if name]
    was_training = backbone.training
    try:
        backbone.eval()
        with torch.no_grad():
            feats = backbone.forward_features(torch.zeros(1, 3, input_size, input_size))
            # The head may widen the features (e.g. MobileNetV3's conv_head), so measure it.
            pooled = int(backbone.forward_head(feats, pre_logits=True).shape[-1])
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    info = getattr(backbone, "feature_info", None)
    stage = None
    if info:
        stage = info[-1]["module"] if isinstance(info, list) else info.module_name()[-1]
    producers = [name for name, output in produced
                 if output is feats and not isinstance(backbone.get_submodule(name), nn.Identity)]
    if stage in producers:  # timm's own name for the last stage, e.g. layer4, stages.3
        return stage, feats.shape, pooled
    if producers:  # forward hooks fire when a module finishes, so the outermost producer comes last
        return producers[-1], feats.shape, pooled
    if stage:
        logger.warning("timm: no module outputs forward_features' result directly; cam_layer = %s", stage)
        return stage, feats.shape, pooled
    raise PluginError(f"Cannot find the last feature stage of {type(backbone).__name__}: no module returns "
                      "forward_features' output and it has no feature_info.")


def _token_grid(backbone: nn.Module, tokens: int) -> tuple[int, int] | None:
    """The patch grid ``(h, w)`` of a token model: timm's ``patch_embed.grid_size``, else the square left
    after ``num_prefix_tokens``; None when neither fits (CAM explainers then refuse with a clear error)."""
    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    if grid is not None and len(grid) == 2 and int(grid[0]) * int(grid[1]) <= tokens:
        return int(grid[0]), int(grid[1])
    patches = tokens - int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    side = math.isqrt(max(patches, 0))
    return (side, side) if side and side * side == patches else None


def _token_cam_layer(backbone: nn.Module, name: str) -> str:
    """Where a token model's CAM hooks: the final norm when the head pools all tokens; when it reads the
    class token only, the patch tokens of that norm get no gradient, so the last block's ``norm1``
    (the input of its attention, pytorch-grad-cam's choice for ViT)."""
    blocks = getattr(backbone, "blocks", None)
    if getattr(backbone, "global_pool", None) != "token" or not isinstance(blocks, nn.Sequential) or not len(blocks):
        return name
    candidate = f"blocks.{len(blocks) - 1}.norm1"
    try:
        backbone.get_submodule(candidate)
    except AttributeError:
        return name
    return candidate


class TimmClassifier(nn.Module):
    """A timm backbone with in-model normalisation, a 2-way head and an optional lesion-mask decoder."""

    def __init__(self, variant: str, *, input_size: int = 224, num_classes: int = 2, segmentation: bool = False,
                 pretrained: str | None = None, timm_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.input_size = int(input_size)
        self.has_segmentation = bool(segmentation)
        weights = _weights_path(variant, pretrained) if pretrained else None
        self.backbone = _create_backbone(variant, self.input_size, dict(timm_kwargs or {}), weights)
        self.init = f"imagenet:{weights}" if weights is not None else "scratch"
        # Fused scaled-dot-product attention has no second derivative on CPU, and the explanation
        # attacks differentiate through the map's gradient; the unfused path computes the same thing.
        for module in self.backbone.modules():
            if getattr(module, "fused_attn", False):
                module.fused_attn = False
        cfg = dict(getattr(self.backbone, "pretrained_cfg", {}) or {})
        self.normalize = Normalize(tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD)))
        self._cam_name, shape, pooled = _probe(self.backbone, self.input_size)
        self.head = nn.Linear(pooled, num_classes)
        channels = int(self.backbone.num_features)
        if len(shape) == 4:
            self.cam_layout = "nchw" if shape[1] == channels or shape[-1] != channels else "nhwc"
        else:
            self.cam_layout = "nlc"
            self.cam_grid = _token_grid(self.backbone, int(shape[1]))
            self._cam_name = _token_cam_layer(self.backbone, self._cam_name)
        self.decoder: MaskDecoder | None = None
        if self.has_segmentation:
            if self.cam_layout == "nlc":
                raise PluginError(f"timm:{variant} gives token features {tuple(shape)}, not a feature map; "
                                  "segmentation=True needs a convolutional (or hierarchical) architecture.")
            channels, side = (shape[1], shape[2]) if self.cam_layout == "nchw" else (shape[3], shape[1])
            blocks = max(0, round(math.log2(self.input_size / side)))
            self.decoder = MaskDecoder(int(channels), decoder_widths(blocks))

    @property
    def cam_layer(self) -> nn.Module:
        """The last feature stage: the module whose output the head pools (see ``cam_layout``)."""
        return self.backbone.get_submodule(self._cam_name)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features`` of the normalised input."""
        return self.backbone.forward_features(self.normalize(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the features."""
        return self.head(self.backbone.forward_head(features, pre_logits=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, 2]`` of images ``[N, 3, H, W]`` in [0, 1]."""
        return self.classify(self.features(x))

    def _decode(self, features: torch.Tensor, size: torch.Size) -> torch.Tensor:
        assert self.decoder is not None
        if self.cam_layout == "nhwc":
            features = features.permute(0, 3, 1, 2)
        return self.decoder(features, size)

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion-mask logits ``[N, 1, H, W]`` at input resolution."""
        if self.decoder is None:
            raise AttributeError(f"timm:{self.variant} was built without a segmentation head (segmentation=True)")
        return self._decode(self.features(x), x.shape[-2:])

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and mask logits (None without a decoder) from one backbone pass."""
        feats = self.features(x)
        masks = self._decode(feats, x.shape[-2:]) if self.decoder is not None else None
        return self.classify(feats), masks


def make_timm(*, variant: str, input_size: int = 224, num_classes: int = 2, segmentation: bool = False,
              pretrained: str | None = None, timm_kwargs: dict[str, Any] | None = None) -> TimmClassifier:
    """Any timm architecture (timm:<name>) as a 2-way classifier, optionally with the lesion-mask decoder."""
    return TimmClassifier(variant, input_size=input_size, num_classes=num_classes, segmentation=segmentation,
                          pretrained=pretrained, timm_kwargs=timm_kwargs)


@hookimpl
def register_models(register):
    register(ModelSpec(name="timm:*", factory=make_timm, input_size=224, has_segmentation=False,
                       options={"segmentation": False, "pretrained": None, "num_classes": 2, "timm_kwargs": None}))
