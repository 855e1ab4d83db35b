"""Reference models: the study's ResNet-50, multi-task (with a lesion-mask decoder) and single-task."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet50

from robustbench_us import ModelSpec, hookimpl

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    """Mean/std normalisation inside the model, so inputs stay in [0, 1] pixel space."""

    def __init__(self, mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MaskDecoder(nn.Module):
    """Conv+ReLU → 2× upsampling → BatchNorm blocks from the last activation up to input resolution."""

    def __init__(self, in_channels: int = 2048, widths: tuple[int, ...] = (256, 128, 64, 32, 16)) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            blocks += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=False),
                       nn.Upsample(scale_factor=2, mode="nearest"), nn.BatchNorm2d(width)]
            channels = width
        blocks.append(nn.Conv2d(channels, 1, 1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.blocks(features)


class ResNet50Classifier(nn.Module):
    """ResNet-50 encoder with a 2-way head and, optionally, the lesion-mask decoder."""

    def __init__(self, *, input_size: int = 224, num_classes: int = 2, segmentation: bool = True) -> None:
        super().__init__()
        backbone = resnet50(weights=None)
        self.input_size = int(input_size)
        self.has_segmentation = bool(segmentation)
        self.normalize = Normalize()
        self.encoder = nn.Sequential(backbone.conv1, backbone.bn1, backbone.relu, backbone.maxpool,
                                     backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2048, num_classes)
        self.decoder = MaskDecoder() if segmentation else None

    @property
    def cam_layer(self) -> nn.Module:
        """The last convolutional stage (7×7×2048 at 224×224), as in the study."""
        return self.encoder[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.pool(self.features(x)), 1))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        """Lesion-mask logits ``[N, 1, H, W]`` at input resolution."""
        if self.decoder is None:
            raise AttributeError("this model has no segmentation head")
        logits = self.decoder(self.features(x))
        if logits.shape[-2:] != x.shape[-2:]:
            logits = nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Class logits and mask logits from one encoder pass (for multi-task training)."""
        feats = self.features(x)
        logits = self.head(torch.flatten(self.pool(feats), 1))
        if self.decoder is None:
            return logits, None
        masks = self.decoder(feats)
        if masks.shape[-2:] != x.shape[-2:]:
            masks = nn.functional.interpolate(masks, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits, masks


def make_resnet50_mtl(*, input_size: int = 224, num_classes: int = 2) -> ResNet50Classifier:
    """The study's multi-task ResNet-50: 2-way head plus a decoder to a lesion mask."""
    return ResNet50Classifier(input_size=input_size, num_classes=num_classes, segmentation=True)


def make_resnet50(*, input_size: int = 224, num_classes: int = 2) -> ResNet50Classifier:
    """The study's single-task ResNet-50: encoder and 2-way head, no decoder."""
    return ResNet50Classifier(input_size=input_size, num_classes=num_classes, segmentation=False)


@hookimpl
def register_models(register):
    register(ModelSpec(name="resnet50-mtl", factory=make_resnet50_mtl, input_size=224, has_segmentation=True))
    register(ModelSpec(name="resnet50", factory=make_resnet50, input_size=224, has_segmentation=False))
