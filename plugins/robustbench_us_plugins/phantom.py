"""The built-in phantom: synthetic B-mode breast images whose lesions follow BI-RADS descriptors.

Each image is simulated, not drawn:

1. **Tissue** as backscatter strength in dB on the image grid: skin line,
   subcutaneous fat with Cooper's ligaments, fibroglandular tissue with a
   low-frequency texture, retromammary fat and striated pectoral muscle; layer
   boundaries undulate.
2. **Lesion** from BI-RADS mass descriptors, drawn per class: benign masses are
   mostly oval or round, circumscribed, parallel (wider than tall), anechoic
   (cyst) or homogeneously hypoechoic; malignant masses are mostly irregular,
   angular / microlobulated / spiculated / indistinct, not parallel
   (taller than wide), heterogeneous, sometimes with an echogenic halo and
   microcalcifications. The mask is the lesion's exact outline at pixel centres.
3. **Posterior features** from attenuation: the excess attenuation of the lesion
   is integrated along depth (the beam's path), so a malignant mass casts an
   acoustic shadow below itself and a cyst shows posterior enhancement.
4. **Speckle**: Gaussian scatterers with that strength are convolved with an
   analytic point-spread function (Gaussian envelope, axial carrier), the
   envelope is detected (magnitude) and log-compressed to a 40 dB display range.

A few descriptors cross classes (some benign masses are irregular, some
malignant ones are parallel without shadow), as in real data. Deterministic per
``(seed, index)``: an image does not depend on ``count``. All images are rendered
on first use, in batches on one core (about 0.35 s for the default suite's 240
images at 128 px), and kept as uint8 like decoded files. ``Sample.meta`` (and
``dataset.lesions``, without rendering) carries the BI-RADS descriptors.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from robustbench_us import DatasetSpec, hookimpl
from robustbench_us.errors import DataError
from robustbench_us.protocols import Sample, Split
from robustbench_us.splits import grouped_stratified_split

_VERSION = "phantom-2"
_DISPLAY_DB = 40.0  # display dynamic range
_REF_DB = 12.0  # level shown as white
_CHUNK = 64  # images rendered together (bounds memory at large sizes)
_NOISE = 16  # side of the low-resolution texture fields


@dataclass(frozen=True)
class Lesion:
    """BI-RADS-like descriptors of one phantom mass (values of the BI-RADS ultrasound lexicon)."""

    shape: str  # oval | round | irregular
    margin: str  # circumscribed | indistinct | angular | microlobulated | spiculated
    orientation: str  # parallel | not parallel
    echo_pattern: str  # anechoic | hypoechoic | heterogeneous
    posterior: str  # enhancement | none | shadowing
    halo: bool
    calcifications: bool

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


class _Draws:
    """Uniform numbers of one image, drawn once from its generator and handed out in order."""

    def __init__(self, g: torch.Generator, n: int = 192) -> None:
        self.values = torch.rand(n, generator=g, dtype=torch.float64).tolist()
        self.next = 0

    def u(self, lo: float = 0.0, hi: float = 1.0) -> float:
        value = self.values[self.next]
        self.next += 1
        return lo + (hi - lo) * value

    def many(self, k: int, lo: float = 0.0, hi: float = 1.0) -> list[float]:
        return [self.u(lo, hi) for _ in range(k)]

    def choice(self, options: dict[str, float]) -> str:
        r, total = self.u(), 0.0
        for name, weight in options.items():
            total += weight
            if r < total:
                return name
        return name


def _draw_lesion(label: int, d: _Draws) -> Lesion:
    if label == 0:
        echo = d.choice({"anechoic": 0.35, "hypoechoic": 0.58, "heterogeneous": 0.07})
        shape = d.choice({"oval": 0.7, "round": 0.24, "irregular": 0.06})
        margin = d.choice({"circumscribed": 0.86, "microlobulated": 0.07, "indistinct": 0.07})
        orientation = d.choice({"parallel": 0.95, "not parallel": 0.05})
        posterior = d.choice({"enhancement": 1.0} if echo == "anechoic" else
                             {"none": 0.5, "enhancement": 0.46, "shadowing": 0.04})
        halo, calc = d.u() < 0.0, d.u() < 0.03
    else:
        echo = d.choice({"hypoechoic": 0.4, "heterogeneous": 0.6})
        shape = d.choice({"irregular": 0.86, "round": 0.08, "oval": 0.06})
        margin = d.choice({"spiculated": 0.35, "angular": 0.27, "microlobulated": 0.2, "indistinct": 0.16,
                           "circumscribed": 0.02})
        orientation = d.choice({"not parallel": 0.8, "parallel": 0.2})
        posterior = d.choice({"shadowing": 0.85, "none": 0.12, "enhancement": 0.03})
        halo, calc = d.u() < 0.4, d.u() < 0.35
    return Lesion(shape, margin, orientation, echo, posterior, halo, calc)


_K = 6  # harmonics of the margin
_S = 14  # most spicules
_C = 6  # most calcifications
_L = 3  # most Cooper's ligaments


def _draw_params(lesion: Lesion, label: int, d: _Draws) -> dict[str, float | list[float]]:
    """Every random number of one image except the noise fields (fixed keys and lengths)."""
    p: dict[str, float | list[float]] = {}
    # Layers: depths (fractions of the image height) and undulations.
    p["skin"] = d.u(0.025, 0.045)
    p["fat"] = d.u(0.12, 0.28)
    p["gland"] = d.u(0.62, 0.8)
    p["muscle"] = p["gland"] + d.u(0.04, 0.1)
    p["wave_amp"] = d.many(3, 0.0, 0.03)
    p["wave_freq"] = d.many(3, 0.5, 2.0)
    p["wave_phase"] = d.many(3, 0.0, 2 * math.pi)
    n_lig = 1 + int(d.u() * _L)
    p["lig_depth"] = [d.u(0.2, 0.8) if j < n_lig else -9.0 for j in range(_L)]  # -9: off the image
    p["lig_freq"] = d.many(_L, 0.4, 1.5)
    p["lig_centre"] = d.many(_L, 0.1, 0.9)
    p["lig_half"] = d.many(_L, 0.1, 0.35)
    p["lig_phase"] = d.many(_L, 0.0, 2 * math.pi)
    p["gain_db"] = d.u(-3.0, 3.0)
    p["tgc_db"] = d.u(-4.0, 1.0)
    p["striae_phase"] = d.u(0.0, 2 * math.pi)
    # Lesion geometry: centre, size, axes (a lateral, b axial), tilt.
    p["cz"] = d.u(0.3, 0.52)
    p["cx"] = d.u(0.28, 0.72)
    size = d.u(0.07, 0.16) if label == 0 else d.u(0.1, 0.2)  # malignant masses tend to be larger
    if lesion.orientation == "parallel":
        ratio = d.u(1.0, 1.25) if lesion.shape == "round" else d.u(1.35, 2.1)  # width / height
        tilt = d.u(-12.0, 12.0)
    else:
        ratio = d.u(0.95, 1.05) if lesion.shape == "round" else d.u(0.6, 0.85)
        tilt = d.u(-30.0, 30.0)
    p["a"], p["b"], p["tilt"] = size * math.sqrt(ratio), size / math.sqrt(ratio), math.radians(tilt)
    # Margin: low harmonics for irregular shapes, scallops, cusps, spicules.
    amp = {"irregular": 0.14, "oval": 0.03, "round": 0.02}[lesion.shape]
    p["harm_amp"] = [d.u(0.3, 1.0) * amp / math.sqrt(k) for k in range(1, _K + 1)]
    p["harm_phase"] = d.many(_K, 0.0, 2 * math.pi)
    p["lobes"] = float(7 + int(d.u() * 7))
    p["lobe_amp"] = d.u(0.07, 0.12) if lesion.margin == "microlobulated" else 0.0
    p["cusps"] = float(3 + int(d.u() * 4))
    p["cusp_amp"] = d.u(0.15, 0.3) if lesion.margin == "angular" else 0.0
    p["cusp_phase"] = d.u(0.0, 2 * math.pi)
    n_spikes = 5 + int(d.u() * (_S - 4))
    spiculated = lesion.margin == "spiculated"
    p["spike_len"] = [d.u(0.25, 0.7) if spiculated and j < n_spikes else 0.0 for j in range(_S)]
    p["spike_angle"] = d.many(_S, 0.0, 2 * math.pi)
    p["edge"] = d.u(0.06, 0.12) if lesion.margin == "indistinct" else d.u(0.01, 0.03)  # echo transition
    # Echo inside the lesion (dB below tissue), heterogeneity, halo, posterior attenuation.
    p["lesion_db"] = {"anechoic": d.u(-42.0, -36.0), "hypoechoic": d.u(-20.0, -14.0),
                      "heterogeneous": d.u(-19.0, -13.0)}[lesion.echo_pattern]
    p["hetero_db"] = d.u(4.0, 7.0) if lesion.echo_pattern == "heterogeneous" else d.u(0.5, 1.5)
    p["halo_db"] = d.u(3.0, 6.0) if lesion.halo else 0.0
    p["posterior_db"] = {"shadowing": d.u(-22.0, -12.0), "none": d.u(-1.0, 1.0),
                         "enhancement": d.u(4.0, 8.0)}[lesion.posterior]
    n_calc = 2 + int(d.u() * (_C - 1)) if lesion.calcifications else 0
    p["calc_u"] = d.many(_C, -0.6, 0.6)
    p["calc_w"] = [d.u(-0.6, 0.6) if j < n_calc else 99.0 for j in range(_C)]  # 99: none
    return p


_TABLE = 720  # angles at which the boundary radius is tabulated


def _radius_table(p: dict[str, torch.Tensor]) -> torch.Tensor:
    """Boundary radius R(φ) [N, T] in the lesion's normalised frame (1 = ellipse), φ on a grid over [-π, π)."""
    phi = (torch.arange(_TABLE, dtype=torch.float32) + 0.5) * (2 * math.pi / _TABLE) - math.pi
    k = torch.arange(1, _K + 1, dtype=torch.float32)
    harm = (p["harm_amp"][:, :, None] * torch.cos(k[None, :, None] * phi + p["harm_phase"][:, :, None])).sum(1)
    lobes = p["lobe_amp"][:, None] * (torch.cos(p["lobes"][:, None] * phi / 2).abs() - 0.64)
    cusps = p["cusp_amp"][:, None] * (0.5 - torch.sin(p["cusps"][:, None] * phi / 2 + p["cusp_phase"][:, None]).abs())
    dphi = phi - p["spike_angle"][:, :, None]
    spikes = (p["spike_len"][:, :, None] * torch.cos(dphi).clamp(min=0) ** 200).sum(1)
    return 1.0 + harm + lobes + cusps + spikes


def _psf(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Separable analytic point-spread function: axial Gaussian × carrier (complex), lateral Gaussian.

    Returns the axial taps ``[2, kz]`` (real and imaginary part) and the lateral
    taps ``[kx]``, with unit energy overall, so fully developed speckle from unit
    scatterers has unit mean power.
    """
    sz, sx = max(0.6, size / 220), max(1.0, size / 110)
    wavelength = max(2.5, 2.5 * sz)
    z = torch.arange(-math.ceil(3 * sz), math.ceil(3 * sz) + 1, dtype=torch.float32)
    x = torch.arange(-math.ceil(3 * sx), math.ceil(3 * sx) + 1, dtype=torch.float32)
    axial = torch.exp(-z**2 / (2 * sz**2)) * torch.exp(1j * (2 * math.pi / wavelength) * z)
    lateral = torch.exp(-x**2 / (2 * sx**2))
    axial = axial / axial.abs().pow(2).sum().sqrt()
    lateral = lateral / lateral.pow(2).sum().sqrt()
    return torch.stack([axial.real, axial.imag]), lateral


def _envelope(amplitude: torch.Tensor) -> torch.Tensor:
    """Envelope of the echo: scatterers [N, S, S] convolved with the analytic PSF, magnitude.

    Shifted sums of the separable taps: with kernels this short they beat both
    FFT and a one-channel conv2d on CPU by 3-6×.
    """
    size = amplitude.shape[-1]
    axial, lateral = _psf(size)
    rz, rx = (axial.shape[1] - 1) // 2, (lateral.shape[0] - 1) // 2
    padded = F.pad(amplitude[:, None], (rx, rx, rz, rz), mode="reflect")[:, 0]
    rows = padded[:, :, 0:size] * lateral[0]
    for i in range(1, lateral.shape[0]):
        rows += padded[:, :, i:i + size] * lateral[i]
    real = rows[:, 0:size] * axial[0, 0]
    imag = rows[:, 0:size] * axial[1, 0]
    for j in range(1, axial.shape[1]):
        real += rows[:, j:j + size] * axial[0, j]
        imag += rows[:, j:j + size] * axial[1, j]
    return torch.hypot(real, imag)


def _render_batch(params: list[dict[str, float | list[float]]], noise: torch.Tensor, scatter: torch.Tensor,
                  size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 [N, S, S] and masks bool [N, S, S] for one batch of parameter sets.

    Written for speed: per-image numbers broadcast as [N, 1, 1], per-row / per-column
    quantities stay [N, S, 1] / [N, 1, S], and only the unavoidable steps touch
    every pixel.
    """
    n = len(params)
    p = {k: torch.tensor([q[k] for q in params], dtype=torch.float32) for k in params[0]}
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    z, x = coords.view(1, size, 1), coords.view(1, 1, size)
    v = {k: t.view(n, 1, 1) for k, t in p.items() if t.dim() == 1}  # per-image scalars, broadcastable
    tex = F.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)  # [N, 2, S, S]

    # 1. Tissue backscatter in dB: layers (boundaries undulate along x), texture, Cooper's ligaments.
    wave = p["wave_amp"][:, :, None] * torch.sin(2 * math.pi * p["wave_freq"][:, :, None] * coords
                                                 + p["wave_phase"][:, :, None])  # [N, 3, S]
    fat_bottom = v["fat"] + wave[:, 0:1]
    gland_bottom = v["gland"] + wave[:, 1:2]
    muscle_top = v["muscle"] + wave[:, 2:3]
    striae = -7.0 + 3.0 * torch.sin(2 * math.pi * 18 * z + v["striae_phase"])  # [N, S, 1]
    db = torch.where(z < fat_bottom, -10.0, torch.where(z < gland_bottom, -1.0,
                                                        torch.where(z < muscle_top, -11.0, striae)))
    db = torch.where(z < v["skin"], 2.0, db + 2.5 * tex[:, 0])
    top = min(size, math.ceil(0.32 * size))  # ligaments live in the fat, above this row
    zt, fb = z[:, :top], fat_bottom
    for j in range(_L):
        curve = (v["skin"] + (fb - v["skin"]) * p["lig_depth"][:, j].view(n, 1, 1)
                 + 0.04 * torch.sin(2 * math.pi * p["lig_freq"][:, j].view(n, 1, 1) * x
                                    + p["lig_phase"][:, j].view(n, 1, 1)))  # [N, 1, S]
        span = (x - p["lig_centre"][:, j].view(n, 1, 1)).abs() < p["lig_half"][:, j].view(n, 1, 1)
        db[:, :top] += 12.0 * ((zt - curve).abs() < 0.008) * (zt < fb) * span

    # 2. Lesion: exact mask from R(φ); echo with a margin-dependent transition, halo, texture.
    dz, dx = z - v["cz"], x - v["cx"]
    cos_t, sin_t = torch.cos(v["tilt"]), torch.sin(v["tilt"])
    u_ = (dx * (cos_t / v["a"])) + (dz * (sin_t / v["a"]))
    w_ = (dz * (cos_t / v["b"])) - (dx * (sin_t / v["b"]))
    rho = torch.hypot(u_, w_)
    idx = ((torch.atan2(w_, u_) + math.pi) * (_TABLE / (2 * math.pi))).long().clamp_(0, _TABLE - 1)
    gap = torch.gather(_radius_table(p), 1, idx.view(n, -1)).view(n, size, size) - rho
    mask = gap >= 0
    inside = (gap / v["edge"] + 0.5).clamp_(0, 1)
    db += inside * (v["lesion_db"] + v["hetero_db"] * tex[:, 1])
    db += v["halo_db"] * ((gap + 0.12).abs() < 0.08)

    # 3. Posterior features: the lesion's excess attenuation integrated down each column.
    thickness = inside.sum(dim=1, keepdim=True).clamp_(min=1.0)  # lesion rows per column [N, 1, S]
    path = torch.cumsum(inside, dim=1).sub_(inside)  # lesion rows above each pixel
    db += path * (v["posterior_db"] * (thickness / (2 * v["b"] * size)).clamp(max=1.0) / thickness)
    db += v["gain_db"] + v["tgc_db"] * z

    # 4. Speckle: scatterers × amplitude, analytic PSF, envelope, log compression.
    amplitude = torch.exp(db.mul_(math.log(10) / 20)).mul_(scatter)
    cu, cw = p["calc_u"], p["calc_w"]  # microcalcifications: bright point reflectors inside the mass
    on = cw < 50
    if bool(on.any()):
        a, b, t = p["a"][:, None], p["b"][:, None], p["tilt"][:, None]
        pz = p["cz"][:, None] + cu * a * torch.sin(t) + cw * b * torch.cos(t)
        px = p["cx"][:, None] + cu * a * torch.cos(t) - cw * b * torch.sin(t)
        iz, ix = (pz * size).long().clamp(0, size - 1), (px * size).long().clamp(0, size - 1)
        img = torch.arange(n)[:, None].expand_as(iz)
        amplitude[img[on], iz[on], ix[on]] += 8.0
    envelope = _envelope(amplitude)
    shown = envelope.clamp_(min=1e-6).log10_().mul_(20 * 255 / _DISPLAY_DB).add_(
        (_DISPLAY_DB - _REF_DB) * 255 / _DISPLAY_DB).clamp_(0, 255)
    # Scanners display speckle averaged over a few resolution cells (and so does a
    # downsampled export); a [1, 2, 1] smoothing after compression stands in for it.
    shown = F.pad(shown[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    shown = (shown[:, :, :-2] + 2 * shown[:, :, 1:-1] + shown[:, :, 2:]) / 4
    shown = (shown[:, :-2] + 2 * shown[:, 1:-1] + shown[:, 2:]) / 4
    return shown.round_().to(torch.uint8), mask


def _image_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"{_VERSION}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & 0x7FFF_FFFF_FFFF_FFFF


def _draw(index: int, label: int, seed: int) -> tuple[Lesion, dict[str, float | list[float]], torch.Generator]:
    """Descriptors and parameters of one image, and its generator positioned for the noise fields."""
    g = torch.Generator().manual_seed(_image_seed(seed, index))
    draws = _Draws(g)
    lesion = _draw_lesion(label, draws)
    return lesion, _draw_params(lesion, label, draws), g


def draw_lesions(indices: list[int], labels: list[int], seed: int) -> list[Lesion]:
    """The BI-RADS descriptors of some images, without rendering them."""
    return [_draw(index, label, seed)[0] for index, label in zip(indices, labels)]


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch ops on one thread for a while.

    Rendering is many medium-sized elementwise ops; on a shared machine with
    more busy processes than cores, torch's worker threads wait on each other
    at every op and rendering gets 20-50× slower, while on an idle machine a
    second thread saves under half. One thread is the robust choice.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def render_phantoms(indices: list[int], labels: list[int], size: int,
                    seed: int) -> tuple[torch.Tensor, torch.Tensor, list[Lesion]]:
    """Images uint8 ``[N, S, S]``, exact masks bool ``[N, S, S]`` and descriptors, deterministic per index."""
    with _one_thread():
        return _render_all(indices, labels, size, seed)


def _render_all(indices: list[int], labels: list[int], size: int,
                seed: int) -> tuple[torch.Tensor, torch.Tensor, list[Lesion]]:
    images, masks, lesions = [], [], []
    for start in range(0, len(indices), _CHUNK):
        params, noise, scatter = [], [], []
        for index, label in zip(indices[start:start + _CHUNK], labels[start:start + _CHUNK]):
            lesion, p, g = _draw(index, label, seed)
            lesions.append(lesion)
            params.append(p)
            noise.append(torch.randn(2, _NOISE, _NOISE, generator=g))  # tissue texture, lesion texture
            scatter.append(torch.randn(size, size, generator=g))
        img, mask = _render_batch(params, torch.stack(noise), torch.stack(scatter), size)
        images.append(img)
        masks.append(mask)
    return torch.cat(images), torch.cat(masks), lesions


def render_phantom(index: int, label: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One image ``[H, W]`` float in [0, 1] and its mask (the same pixels as in the dataset)."""
    image, mask, _ = render_phantoms([index], [label], size, seed)
    return image[0].float() / 255, mask[0]


class PhantomDataset:
    """A seeded synthetic B-mode dataset, rendered in one batch on first use and cached as uint8."""

    classes = ("benign", "malignant")
    name = "phantom"

    def __init__(self, *, count: int = 240, image_size: int = 224, seed: int = 0,
                 malignant_fraction: float = 0.5) -> None:
        if count < 10:
            raise DataError(f"phantom: count={count} is too small for a train/val/test split; use at least 10.")
        if not 0.0 < malignant_fraction < 1.0:
            raise DataError(f"phantom: malignant_fraction={malignant_fraction} must be strictly between 0 and 1.")
        if image_size < 16:
            raise DataError(f"phantom: image_size={image_size} is too small; use at least 16.")
        self.count, self.image_size, self.seed = int(count), int(image_size), int(seed)
        n_malignant = round(count * malignant_fraction)
        # Spread exactly n_malignant malignant images evenly over the indices (Bresenham).
        self.labels: list[int] = [((i + 1) * n_malignant) // count - (i * n_malignant) // count
                                  for i in range(count)]
        self.ids: list[str] = [f"phantom-{i:05d}" for i in range(count)]
        self.groups: list[str] = list(self.ids)  # every image is its own patient
        self._cache: tuple[torch.Tensor, torch.Tensor, list[Lesion]] | None = None
        self._lesions: list[Lesion] | None = None

    @property
    def lesions(self) -> list[Lesion]:
        """Every image's BI-RADS descriptors (drawn without rendering)."""
        if self._lesions is None:
            self._lesions = (self._cache[2] if self._cache is not None
                             else draw_lesions(list(range(self.count)), self.labels, self.seed))
        return self._lesions

    def _rendered(self) -> tuple[torch.Tensor, torch.Tensor, list[Lesion]]:
        if self._cache is None:
            self._cache = render_phantoms(list(range(self.count)), self.labels, self.image_size, self.seed)
        return self._cache

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        if not -self.count <= index < self.count:
            raise IndexError(f"phantom: index {index} out of range for {self.count} images")
        index %= self.count
        images, masks, lesions = self._rendered()
        image = images[index].to(torch.float32).div_(255.0).unsqueeze(0).expand(3, -1, -1).contiguous()
        return Sample(image=image, label=self.labels[index], id=self.ids[index], group=self.groups[index],
                      mask=masks[index].clone(), meta={"class": self.classes[self.labels[index]],
                                                       **lesions[index].to_dict()})

    def arrays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The cache itself: uint8 images ``[N, S, S]`` and bool masks ``[N, S, S]`` (do not modify)."""
        images, masks, _ = self._rendered()
        return images, masks

    def manifest_hash(self) -> str:
        """A hash of what defines the data: generator version, seed, count and size."""
        key = f"{_VERSION}:{self.seed}:{self.count}:{self.image_size}:{self.labels}"
        return hashlib.sha256(key.encode()).hexdigest()

    def split(self, seed: int, fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)) -> Split:
        """Stratified split; every phantom image is its own group."""
        return grouped_stratified_split(self.labels, self.groups, seed, fractions)


def make_phantom(*, root: str | None = None, image_size: int = 224, count: int = 240, seed: int = 0,
                 malignant_fraction: float = 0.5) -> PhantomDataset:
    """Synthetic B-mode phantom (speckle, tissue layers, BI-RADS-like lesions), generated from a seed."""
    del root  # nothing to read
    return PhantomDataset(count=count, image_size=image_size, seed=seed, malignant_fraction=malignant_fraction)


@hookimpl
def register_datasets(register):
    register(DatasetSpec(name="phantom", factory=make_phantom, has_masks=True,
                         options={"count": 240, "malignant_fraction": 0.5}))
