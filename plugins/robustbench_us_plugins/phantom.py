"""The built-in phantom: synthetic B-mode images with benign- and malignant-looking lesions."""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F

from robustbench_us import DatasetSpec, hookimpl
from robustbench_us.errors import DataError
from robustbench_us.protocols import Sample, Split
from robustbench_us.splits import grouped_stratified_split

_VERSION = "phantom-1"


def _lesion_mask(label: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A lesion outline: smooth oval, parallel (benign) or irregular, taller-than-wide (malignant)."""
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    cy = (torch.rand((), generator=g) * 0.5 - 0.15).item()
    cx = (torch.rand((), generator=g) * 0.8 - 0.4).item()
    radius = 0.18 + 0.12 * torch.rand((), generator=g).item()
    dy, dx = yy - cy, xx - cx
    angle = torch.atan2(dy, dx)
    if label == 0:  # oval, wider than tall, circumscribed
        ry, rx = radius * 0.65, radius * 1.25
        r = torch.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
        return r <= 1.0
    ry, rx = radius * 1.2, radius * 0.85  # taller than wide
    spikes = int(torch.randint(5, 10, (), generator=g))
    phase = torch.rand((), generator=g).item() * 2 * math.pi
    wobble = 0.25 * torch.sin(spikes * angle + phase).clamp(min=0) ** 3 + 0.08 * torch.sin(3 * angle + 2 * phase)
    r = torch.sqrt((dy / ry) ** 2 + (dx / rx) ** 2)
    return r <= 1.0 + wobble


def render_phantom(index: int, label: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Render one image ``[H, W]`` in [0, 1] and its lesion mask, deterministically."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + index) & 0x7FFFFFFF)
    mask = _lesion_mask(label, size, g)
    depth = torch.linspace(0, 1, size).unsqueeze(1).expand(size, size)
    # Tissue layers: bright skin line, fat, glandular band; attenuation with depth.
    echo = 0.55 + 0.25 * torch.exp(-((depth - 0.05) / 0.03) ** 2) + 0.15 * torch.exp(-((depth - 0.45) / 0.15) ** 2)
    echo = echo * torch.exp(-0.6 * depth)
    lesion_echo = 0.25 if label == 0 else 0.15
    echo = torch.where(mask, torch.full_like(echo, lesion_echo), echo)
    if label == 1:  # posterior acoustic shadowing under the lesion
        cols = mask.any(dim=0)
        below = torch.cumsum(mask.float(), dim=0) > 0
        echo = torch.where(below & ~mask & cols.unsqueeze(0), echo * 0.45, echo)
    else:  # benign cysts often show posterior enhancement
        cols = mask.any(dim=0)
        below = torch.cumsum(mask.float(), dim=0) > 0
        echo = torch.where(below & ~mask & cols.unsqueeze(0), (echo * 1.2).clamp(max=1), echo)
    # Speckle: complex Gaussian scatterers, blurred by a point-spread function, envelope, log compression.
    real = torch.randn(size, size, generator=g)
    imag = torch.randn(size, size, generator=g)
    psf = torch.exp(-torch.linspace(-2, 2, 7) ** 2)
    kernel = (psf[:, None] * psf[None, :] * 0.5).unsqueeze(0).unsqueeze(0)
    kernel = kernel / kernel.sum()
    real = F.conv2d(real[None, None], kernel, padding=3)[0, 0]
    imag = F.conv2d(imag[None, None], kernel, padding=3)[0, 0]
    envelope = torch.sqrt(real**2 + imag**2) * echo
    image = torch.log1p(20 * envelope) / math.log1p(20 * 1.5)
    return image.clamp(0, 1), mask


class PhantomDataset:
    """A seeded synthetic B-mode dataset, rendered on demand."""

    classes = ("benign", "malignant")

    def __init__(self, *, count: int = 240, image_size: int = 224, seed: int = 0,
                 malignant_fraction: float = 0.5) -> None:
        if count < 10:
            raise DataError(f"phantom: count={count} is too small for a train/val/test split; use at least 10.")
        self.count, self.image_size, self.seed = int(count), int(image_size), int(seed)
        n_malignant = round(count * malignant_fraction)
        # 7919 is prime, so this interleaves exactly n_malignant malignant images.
        self.labels = [1 if (i * 7919) % count < n_malignant else 0 for i in range(count)]

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < self.count:
            raise IndexError(index)
        label = self.labels[index]
        image, mask = render_phantom(index, label, self.image_size, self.seed)
        return Sample(image=image.unsqueeze(0).repeat(3, 1, 1), label=label, id=f"phantom-{index:05d}",
                      group=f"phantom-{index:05d}", mask=mask)

    def manifest_hash(self) -> str:
        """A hash of what defines the data: generator version, seed, count and size."""
        key = f"{_VERSION}:{self.seed}:{self.count}:{self.image_size}:{self.labels}"
        return hashlib.sha256(key.encode()).hexdigest()

    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
        """Stratified split; every phantom image is its own group."""
        return grouped_stratified_split(self.labels, [f"phantom-{i}" for i in range(self.count)], seed, fractions)


def make_phantom(*, root: str | None = None, image_size: int = 224, count: int = 240, seed: int = 0,
                 malignant_fraction: float = 0.5) -> PhantomDataset:
    """Synthetic B-mode phantom (speckle, tissue layers, BI-RADS-like lesions), generated from a seed."""
    return PhantomDataset(count=count, image_size=image_size, seed=seed, malignant_fraction=malignant_fraction)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="phantom", factory=make_phantom, has_masks=True))
