"""Small fake plugins for tests: a tiny CNN model, fast on CPU, with the model contract."""

from __future__ import annotations

import torch
from torch import nn

from robustbench_us import ModelSpec, hookimpl


class TinyNet(nn.Module):
    """A two-stage CNN with a 2-way head and a mask head; ``cam_layer`` is its last conv stage."""

    def __init__(self, *, input_size: int = 32, num_classes: int = 2, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.input_size = input_size
        self.has_segmentation = True
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.stage2 = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())
        self.head = nn.Linear(16, num_classes)
        self.mask_head = nn.Conv2d(16, 1, 1)

    @property
    def cam_layer(self) -> nn.Module:
        return self.stage2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.stage2(self.stage1(x))
        return self.head(feats.mean(dim=(2, 3)))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_both(x)[1]

    def forward_both(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and mask logits from one pass (training uses it, so BatchNorm-free stats update once)."""
        feats = self.stage2(self.stage1(x))
        masks = nn.functional.interpolate(self.mask_head(feats), size=x.shape[-2:], mode="bilinear",
                                          align_corners=False)
        return self.head(feats.mean(dim=(2, 3))), masks


def make_tiny(*, input_size: int = 32, num_classes: int = 2) -> TinyNet:
    """A tiny CNN for fast tests."""
    return TinyNet(input_size=input_size, num_classes=num_classes)


@hookimpl
def register_models(register):
    register(ModelSpec(name="tiny-cnn", factory=make_tiny, input_size=32, has_segmentation=True))
