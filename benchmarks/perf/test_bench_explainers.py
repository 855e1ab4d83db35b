"""Explainer benchmarks: one forward+backward, our Grad-CAM, pytorch-grad-cam, Captum; scaling in images."""

from __future__ import annotations

import pytest

from workloads import bench_for


@pytest.mark.benchmark(group="explainer")
def test_one_forward_backward(bench, measure):
    measure(bench.bare(1), bench)


@pytest.mark.benchmark(group="explainer")
def test_gradcam(bench, measure):
    maps = measure(bench.gradcam(), bench)
    assert sum(len(m) for m in maps) == bench.settings.images


@pytest.mark.benchmark(group="explainer")
def test_pytorch_grad_cam(bench, measure):
    measure(bench.pgc(), bench)


@pytest.mark.benchmark(group="explainer")
def test_captum_layer_gradcam(bench, measure):
    measure(bench.captum(), bench)


@pytest.mark.benchmark(group="explainer-images")
@pytest.mark.parametrize("images", [8, 16, 32, 64])
def test_gradcam_cost_with_images(images, measure):
    bench = bench_for(images=images, batch=min(images, 32))
    measure(bench.gradcam(), bench)
