"""Input-gradient explainers: saliency, integrated gradients and SmoothGrad, batched in pure torch.

Each one produces an attribution per input channel, ``[N, C, H, W]``, and turns
it into a map ``[N, H, W]`` with a channel reduction (option ``channels``). The
default, ``'grey'``, is ``|sum over channels|``: for ultrasound images, which
enter as one grey value repeated in three channels, that is exactly the
attribution of the grey pixel (the chain rule sums the three channel
gradients), so the map does not depend on how the model weighs the copies.
"""

from __future__ import annotations

from enum import StrEnum

import torch
from torch import nn

from robustbench_us import ExplainerSpec, hookimpl
from robustbench_us_plugins.gradcam import (ExplainerError, MapNormalization, check_batch, eval_mode,
                                            gradient_input, normalize_maps, parse_option, target_scores)


class ChannelReduction(StrEnum):
    """How a per-channel attribution ``[N, C, H, W]`` becomes a non-negative map ``[N, H, W]``."""

    GREY = "grey"  # |Σ_c a_c|: the attribution of a grey value repeated in every channel
    MAX = "max"    # max_c |a_c| (Simonyan et al. 2014)
    SUM = "sum"    # Σ_c |a_c|


class Quadrature(StrEnum):
    """Where integrated gradients samples the path from the baseline to the image (Captum's methods)."""

    GAUSS_LEGENDRE = "gauss-legendre"
    RIEMANN_LEFT = "riemann-left"
    RIEMANN_RIGHT = "riemann-right"
    RIEMANN_MIDDLE = "riemann-middle"
    RIEMANN_TRAPEZOID = "riemann-trapezoid"


def reduce_channels(attribution: torch.Tensor, how: ChannelReduction) -> torch.Tensor:
    """Turn ``[N, C, H, W]`` into the non-negative ``[N, H, W]`` map ``how`` names."""
    if how is ChannelReduction.GREY:
        return attribution.sum(dim=1).abs()
    if how is ChannelReduction.MAX:
        return attribution.abs().amax(dim=1)
    return attribution.abs().sum(dim=1)


def input_gradient(explainer: str, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                   create_graph: bool) -> torch.Tensor:
    """``d logit[target] / d x`` per image, ``[N, C, H, W]``; ``x`` is used as given (see ``gradient_input``)."""
    scores = target_scores(explainer, model(x), target)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=create_graph)
    return grad


def quadrature(method: Quadrature, steps: int) -> tuple[list[float], list[float]]:
    """Path positions ``alphas`` in [0, 1] and their weights, which sum to one.

    Gauss–Legendre nodes come from the Golub–Welsch eigenproblem in float64,
    so no NumPy is needed; they agree with ``numpy.polynomial.legendre.leggauss``.
    """
    if method is Quadrature.GAUSS_LEGENDRE:
        k = torch.arange(1, steps, dtype=torch.float64)
        off_diagonal = k / torch.sqrt(4 * k * k - 1)
        jacobi = torch.diag(off_diagonal, 1) + torch.diag(off_diagonal, -1)
        nodes, vectors = torch.linalg.eigh(jacobi)
        return (0.5 * (nodes + 1)).tolist(), vectors[0].pow(2).tolist()
    if steps < 2:
        raise ExplainerError(f"Explainer 'integrated-gradients': method {str(method)!r} needs steps >= 2; "
                             f"got {steps}.")
    if method is Quadrature.RIEMANN_TRAPEZOID:
        # Spacing 1/(steps − 1), so the weights sum to one. (Captum 0.9 uses 1/steps here, which
        # scales its trapezoid attributions by (steps − 1)/steps and breaks completeness.)
        weights = [1.0 / (steps - 1)] * steps
        weights[0] /= 2
        weights[-1] /= 2
        return [i / (steps - 1) for i in range(steps)], weights
    weights = [1.0 / steps] * steps
    start = {Quadrature.RIEMANN_LEFT: 0.0, Quadrature.RIEMANN_MIDDLE: 0.5, Quadrature.RIEMANN_RIGHT: 1.0}[method]
    return [(i + start) / steps for i in range(steps)], weights


class _InputGradientExplainer:
    """Shared options and bookkeeping of the input-gradient explainers."""

    name = "gradient"
    differentiable = True

    def __init__(self, *, channels: str = "grey", normalize: str = "max") -> None:
        self.channels = parse_option(ChannelReduction, channels, self.name, "channels")
        self.normalize = parse_option(MapNormalization, normalize, self.name, "normalize")

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                  create_graph: bool) -> torch.Tensor:
        """The per-channel attribution ``[N, C, H, W]`` (model already in eval mode, grad enabled)."""
        raise NotImplementedError

    def explain(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor, *,
                create_graph: bool = False) -> torch.Tensor:
        """Maps ``[N, H, W]`` for class ``target[i]`` of image ``x[i]``, on ``x``'s device."""
        check_batch(self.name, x, target)
        with eval_mode(model):
            attribution = self.attribute(model, x, target, create_graph=create_graph)
            if not create_graph:
                attribution = attribution.detach()
            with torch.set_grad_enabled(create_graph):
                return normalize_maps(self.reduce(attribution), self.normalize)

    def reduce(self, attribution: torch.Tensor) -> torch.Tensor:
        return reduce_channels(attribution, self.channels)


class Saliency(_InputGradientExplainer):
    """Saliency (Simonyan et al. 2014): the gradient of the target logit with respect to the pixels."""

    name = "saliency"

    def attribute(self, model, x, target, *, create_graph):
        return input_gradient(self.name, model, gradient_input(x, create_graph), target, create_graph=create_graph)

    def __repr__(self) -> str:
        return f"Saliency(channels={str(self.channels)!r}, normalize={str(self.normalize)!r})"


class IntegratedGradients(_InputGradientExplainer):
    """Integrated gradients (Sundararajan et al., ICML 2017): (x − baseline) × the path-averaged gradient.

    ``baseline`` is a grey level in [0, 1] (0.0, black, by default) or a tensor
    that broadcasts to ``x``; ``steps`` gradient evaluations along the straight
    path, placed by ``method`` (Captum's names in kebab-case; Gauss–Legendre
    by default, as in Captum). With ``channels='grey'`` and a grey baseline the
    map sums to |logit(x) − logit(baseline)| up to the quadrature error
    (completeness).
    """

    name = "integrated-gradients"

    def __init__(self, *, steps: int = 50, baseline: float | torch.Tensor = 0.0, method: str = "gauss-legendre",
                 channels: str = "grey", normalize: str = "max") -> None:
        super().__init__(channels=channels, normalize=normalize)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ExplainerError(f"Explainer {self.name!r}: steps={steps!r} must be a positive integer.")
        if not isinstance(baseline, (int, float, torch.Tensor)) or isinstance(baseline, bool):
            raise ExplainerError(f"Explainer {self.name!r}: baseline={baseline!r} must be a grey level in [0, 1] "
                                 "or a tensor that broadcasts to the images.")
        self.steps = steps
        self.baseline = baseline
        self.method = parse_option(Quadrature, method, self.name, "method")
        self.alphas, self.weights = quadrature(self.method, steps)

    def attribute(self, model, x, target, *, create_graph):
        if isinstance(self.baseline, torch.Tensor):
            baseline = self.baseline.to(device=x.device, dtype=x.dtype)
        else:
            baseline = torch.full((), float(self.baseline), device=x.device, dtype=x.dtype)
        x_graph = x if (create_graph and x.requires_grad) else x.detach()
        delta = x_graph - baseline
        total = torch.zeros_like(x_graph)
        for alpha, weight in zip(self.alphas, self.weights):
            point = gradient_input(baseline + alpha * delta, create_graph)
            grad = input_gradient(self.name, model, point, target, create_graph=create_graph)
            total = total + weight * grad
        return delta * total

    def __repr__(self) -> str:
        baseline = "tensor" if isinstance(self.baseline, torch.Tensor) else self.baseline
        return (f"IntegratedGradients(steps={self.steps}, baseline={baseline}, method={str(self.method)!r}, "
                f"channels={str(self.channels)!r}, normalize={str(self.normalize)!r})")


class SmoothGrad(_InputGradientExplainer):
    """SmoothGrad (Smilkov et al. 2017): the saliency map averaged over Gaussian-noised copies of the image.

    ``sigma`` is the noise standard deviation in [0, 1] pixel units (0.15 is
    the paper's 15 % noise level); ``samples`` copies. Each sample's map is
    reduced over channels and then averaged, as in the paper. Noise comes from
    a CPU ``torch.Generator`` seeded with ``seed`` afresh at every call, and
    the same draws serve every image of a batch: a map depends only on its
    image, never on the batch it came in or on earlier calls, and CPU and CUDA
    see the same noise. Pass ``generator`` instead to draw from your own
    generator (then successive calls see different noise).
    """

    name = "smoothgrad"

    def __init__(self, *, samples: int = 50, sigma: float = 0.15, seed: int = 0,
                 generator: torch.Generator | None = None, channels: str = "grey", normalize: str = "max") -> None:
        super().__init__(channels=channels, normalize=normalize)
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ExplainerError(f"Explainer {self.name!r}: samples={samples!r} must be a positive integer.")
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or sigma < 0:
            raise ExplainerError(f"Explainer {self.name!r}: sigma={sigma!r} must be a non-negative number "
                                 "(noise standard deviation in [0, 1] pixel units).")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ExplainerError(f"Explainer {self.name!r}: generator={generator!r} must be a torch.Generator.")
        self.samples = samples
        self.sigma = float(sigma)
        self.seed = int(seed)
        self.generator = generator

    def noise(self, x: torch.Tensor) -> torch.Tensor:
        """``samples`` noise images ``[S, 1, C, H, W]`` on ``x``'s device, shared by the whole batch."""
        generator = self.generator or torch.Generator().manual_seed(self.seed)
        draws = torch.randn((self.samples, 1, *x.shape[1:]), generator=generator, device=generator.device,
                            dtype=x.dtype)
        return (draws * self.sigma).to(x.device)

    def attribute(self, model, x, target, *, create_graph):
        # Reduction happens per sample, so attribute() returns the averaged map as one channel.
        x_graph = x if (create_graph and x.requires_grad) else x.detach()
        total = None
        for noise in self.noise(x):
            point = gradient_input(x_graph + noise, create_graph)
            grad = input_gradient(self.name, model, point, target, create_graph=create_graph)
            sample_map = reduce_channels(grad, self.channels)
            total = sample_map if total is None else total + sample_map
        return (total / self.samples).unsqueeze(1)

    def reduce(self, attribution: torch.Tensor) -> torch.Tensor:
        return attribution[:, 0]

    def __repr__(self) -> str:
        return (f"SmoothGrad(samples={self.samples}, sigma={self.sigma}, seed={self.seed}, "
                f"channels={str(self.channels)!r}, normalize={str(self.normalize)!r})")


def make_saliency(*, channels: str = "grey", normalize: str = "max") -> Saliency:
    """Saliency: absolute gradient of the target logit with respect to the grey pixels."""
    return Saliency(channels=channels, normalize=normalize)


def make_integrated_gradients(*, steps: int = 50, baseline: float | torch.Tensor = 0.0,
                              method: str = "gauss-legendre", channels: str = "grey",
                              normalize: str = "max") -> IntegratedGradients:
    """Integrated gradients from a black (or given) baseline to the image, absolute per pixel."""
    return IntegratedGradients(steps=steps, baseline=baseline, method=method, channels=channels,
                               normalize=normalize)


def make_smoothgrad(*, samples: int = 50, sigma: float = 0.15, seed: int = 0,
                    generator: torch.Generator | None = None, channels: str = "grey",
                    normalize: str = "max") -> SmoothGrad:
    """SmoothGrad: saliency averaged over seeded Gaussian-noised copies of the image."""
    return SmoothGrad(samples=samples, sigma=sigma, seed=seed, generator=generator, channels=channels,
                      normalize=normalize)


@hookimpl
def register_explainers(register):
    register(ExplainerSpec(name="saliency", factory=make_saliency, differentiable=True,
                           options={"channels": "grey", "normalize": "max"}))
    register(ExplainerSpec(name="integrated-gradients", factory=make_integrated_gradients, differentiable=True,
                           options={"steps": 50, "baseline": 0.0, "method": "gauss-legendre", "channels": "grey",
                                    "normalize": "max"}))
    register(ExplainerSpec(name="smoothgrad", factory=make_smoothgrad, differentiable=True,
                           options={"samples": 50, "sigma": 0.15, "seed": 0, "channels": "grey",
                                    "normalize": "max"}))
