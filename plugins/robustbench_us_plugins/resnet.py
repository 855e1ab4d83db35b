"""Reference models: the study's ResNet-50, multi-task (with a lesion-mask decoder) and single-task.

Rasaee & Rivaz (IUS 2021) replace ResNet-50's 1000-way head by a 2-way dense +
softmax layer; the multi-task variant adds a decoder from the last activation
(7×7×2048 at 224×224) to a 224×224×1 lesion mask "built from sub-blocks of
Conv2D+ReLU → UpSampling2D(2, 2) → BatchNorm". Where the text is silent this
module chooses, and says so:

- **Decoder depth**: five blocks, because the encoder's stride is 32 = 2⁵; any input
  whose side is divisible by 32 comes back at exactly that size. Other sizes are
  resized to the input with bilinear interpolation as a last step.
- **Decoder widths**: 256, 128, 64, 32, 16 channels (halving; not stated).
- **Convolutions**: 3×3, stride 1, "same" padding, with bias (Keras defaults).
- **Upsampling**: nearest neighbour, Keras ``UpSampling2D``'s default.
- **BatchNorm**: after the upsampling, in the order the text lists.
- **Final activation**: a 1×1 convolution to one channel returning *logits*; the
  sigmoid (the Keras model's output activation) is applied by the loss and by
  consumers, ``torch.sigmoid(model.segment(x))``. Likewise ``forward`` returns the
  2-way logits and the softmax is left to the loss, so attacks get clean gradients.
- **Classification head**: global average pooling then one linear layer, as in
  Keras' ``ResNet50(include_top=False, pooling="avg")`` + ``Dense(2)``.
- **Normalisation**: ImageNet mean/std inside the model (inputs stay in [0, 1]);
  Keras' ResNet-50 used Caffe-style BGR mean subtraction instead, which matters
  only for its own pretrained weights.
- **ReLUs are not in-place**, so hooks (Grad-CAM) and ReLU→softplus swaps work on
  any layer.

Initialisation: from scratch by default; ``pretrained="imagenet"`` loads
torchvision's ResNet-50 ImageNet weights from the torch hub cache, or
``pretrained="<file>"`` a local ``.safetensors`` / ``.pth`` file with torchvision
(or timm) ResNet-50 keys. Nothing is downloaded. The model's ``init`` attribute
says which one happened (``"scratch"`` or ``"imagenet:<path>"``; loading a project
checkpoint later sets ``"checkpoint:<path>"``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet50

from robustbench_us import ModelSpec, hookimpl
from robustbench_us.errors import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ENCODER_STRIDE = 32
# torchvision's ResNet-50 ImageNet weight files, as torch.hub caches them (V1 first: the classic recipe).
TORCHVISION_RESNET50_FILES = ("resnet50-0676ba61.pth", "resnet50-11ad3fa6.pth")
logger = logging.getLogger(__name__)


class Normalize(nn.Module):
    """Mean/std normalisation inside the model, so inputs stay in [0, 1] pixel space."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def decoder_widths(blocks: int, first: int = 256, last: int = 16) -> tuple[int, ...]:
    """Channel widths of ``blocks`` decoder blocks: halving from ``first``, never below ``last``."""
    return tuple(max(first >> i, last) for i in range(blocks))


class MaskDecoder(nn.Module):
    """Conv3×3+ReLU → 2× nearest upsampling → BatchNorm blocks, then a 1×1 conv to mask logits."""

    def __init__(self, in_channels: int = 2048, widths: tuple[int, ...] = decoder_widths(5)) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks.append(nn.Sequential(nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False),
                                        nn.Upsample(scale_factor=2, mode="nearest"), nn.BatchNorm2d(width)))
            channels = width
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(channels, 1, 1)
        self.upsampling = 2 ** len(widths)

    def forward(self, features: torch.Tensor, size: tuple[int, int] | torch.Size | None = None) -> torch.Tensor:
        """Mask logits ``[N, 1, h·2^k, w·2^k]``, resized to ``size`` when that differs."""
        logits = self.out(self.blocks(features))
        if size is not None and tuple(logits.shape[-2:]) != tuple(size):
            logits = nn.functional.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)
        return logits


class ResNet50Encoder(nn.Module):
    """torchvision's ResNet-50 without its pooling and head; keys match torchvision's (conv1, layer1, ...)."""

    def __init__(self) -> None:
        super().__init__()
        backbone = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (backbone.layer1, backbone.layer2, backbone.layer3,
                                                              backbone.layer4)
        for module in self.modules():
            if isinstance(module, nn.ReLU):
                module.inplace = False
        self.out_channels = 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ResNet50Classifier(nn.Module):
    """ResNet-50 encoder with a 2-way head and, optionally, the lesion-mask decoder."""

    def __init__(self, *, input_size: int = 224, num_classes: int = 2, segmentation: bool = True) -> None:
        super().__init__()
        self.input_size = int(input_size)
        self.has_segmentation = bool(segmentation)
        self.init = "scratch"
        self.normalize = Normalize()
        self.encoder = ResNet50Encoder()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(self.encoder.out_channels, num_classes)
        self.decoder = MaskDecoder(self.encoder.out_channels, decoder_widths(5)) if segmentation else None

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage (7×7×2048 at 224×224), the layer the study's Grad-CAM used."""
        return self.encoder.layer4

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last activation ``[N, 2048, H/32, W/32]`` of ``x`` in [0, 1]."""
        return self.encoder(self.normalize(x))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Class logits from the last activation."""
        return self.head(torch.flatten(self.pool(features), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[N, 2]`` of images ``[N, 3, H, W]`` in [0, 1]."""
        return self.classify(self.features(x))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion-mask logits ``[N, 1, H, W]`` at input resolution."""
        if self.decoder is None:
            raise AttributeError("this model has no segmentation head; use resnet50-mtl")
        return self.decoder(self.features(x), x.shape[-2:])

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and mask logits (None without a decoder) from one encoder pass."""
        feats = self.features(x)
        masks = self.decoder(feats, x.shape[-2:]) if self.decoder is not None else None
        return self.classify(feats), masks


# ------------------------------------------------------------------ pretrained weights
def read_weights_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``.safetensors`` or, with torch's restricted ``weights_only`` loader, ``.pth``/``.bin``.

    ``weights_only=True`` accepts tensors and plain containers only, so a file cannot
    run code; nested ``state_dict`` / ``model`` entries and a ``module.`` prefix are
    unwrapped.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"Pretrained weights file {path} does not exist. Check the path given as "
                              "pretrained=..., or leave it out to start from scratch.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure means the same thing to the user
        raise CheckpointError(f"Pretrained weights file {path} cannot be read ({type(exc).__name__}: {exc}). "
                              "Give a .safetensors file or a plain state-dict .pth (torch.save(model.state_dict()))."
                              ) from exc
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"Pretrained weights file {path} does not hold a state dict of tensors.")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}


def find_cached_file(names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` present in the torch hub cache (``$TORCH_HOME/hub/checkpoints``)."""
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    for name in names:
        if (folder / name).is_file():
            return folder / name
    return None


def load_backbone_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: Path,
                          ignore_prefixes: tuple[str, ...] = ("fc.",)) -> None:
    """Load an ImageNet backbone state dict strictly, ignoring only its classifier keys."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        def show(items: list[str]) -> str:
            return ", ".join(items[:3]) + (f" … ({len(items)})" if len(items) > 3 else "")

        raise CheckpointError(
            f"Pretrained weights {source} do not fit {type(module).__name__}: missing {show(missing) or 'none'}; "
            f"unexpected {show(unexpected) or 'none'}; wrong shape {show(wrong) or 'none'}. Give ImageNet weights "
            "of the same architecture (torchvision/timm key names).")
    module.load_state_dict(state, strict=True)


def load_resnet50_pretrained(model: ResNet50Classifier, pretrained: str) -> None:
    """Load ImageNet weights into the encoder: ``"imagenet"`` (torch hub cache) or a file path."""
    if pretrained == "imagenet":
        path = find_cached_file(TORCHVISION_RESNET50_FILES)
        if path is None:
            folder = Path(torch.hub.get_dir()) / "checkpoints"
            raise CheckpointError(
                "ImageNet weights for ResNet-50 are not in the torch hub cache and this machine does not download. "
                f"Put torchvision's file ({' or '.join(TORCHVISION_RESNET50_FILES)}, from "
                "https://download.pytorch.org/models/) in " + str(folder) + ", pass pretrained=\"/path/to/file\", "
                "or leave pretrained unset to train from scratch.")
    else:
        path = Path(pretrained).expanduser()
    load_backbone_weights(model.encoder, read_weights_file(path), path)
    model.init = f"imagenet:{path}"
    logger.info("resnet50: encoder initialised from %s", path)


def _build(input_size: int, num_classes: int, segmentation: bool, pretrained: str | None) -> ResNet50Classifier:
    if input_size % ENCODER_STRIDE:
        logger.warning("input_size=%d is not divisible by %d; the mask decoder output is resized to it",
                       input_size, ENCODER_STRIDE)
    model = ResNet50Classifier(input_size=input_size, num_classes=num_classes, segmentation=segmentation)
    if pretrained:
        load_resnet50_pretrained(model, pretrained)
    return model


def make_resnet50_mtl(*, input_size: int = 224, num_classes: int = 2,
                      pretrained: str | None = None) -> ResNet50Classifier:
    """The study's multi-task ResNet-50: 2-way head plus a decoder to a lesion mask."""
    return _build(input_size, num_classes, True, pretrained)


def make_resnet50(*, input_size: int = 224, num_classes: int = 2, pretrained: str | None = None) -> ResNet50Classifier:
    """The study's single-task ResNet-50: encoder and 2-way head, no decoder."""
    return _build(input_size, num_classes, False, pretrained)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (not buffers)."""
    return sum(p.numel() for p in module.parameters())


@hookimpl
def register_models(register):
    options = {"num_classes": 2, "pretrained": None}
    register(ModelSpec(name="resnet50-mtl", factory=make_resnet50_mtl, input_size=224, has_segmentation=True,
                       options=options))
    register(ModelSpec(name="resnet50", factory=make_resnet50, input_size=224, has_segmentation=False,
                       options=options))


__all__ = ["Normalize", "MaskDecoder", "ResNet50Classifier", "make_resnet50_mtl", "make_resnet50",
           "read_weights_file", "load_backbone_weights", "find_cached_file", "decoder_widths", "count_parameters"]
