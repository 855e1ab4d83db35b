"""Attack benchmarks: bare forward+backward floor, our ifgsm, a runner cell, ART's BIM; scaling."""

from __future__ import annotations

import pytest

from workloads import bench_for


@pytest.mark.benchmark(group="attack")
def test_bare_forward_backward_loop(bench, measure):
    measure(bench.bare(bench.settings.steps), bench, passes=bench.settings.steps)


@pytest.mark.benchmark(group="attack")
def test_ifgsm(bench, measure):
    measure(bench.ifgsm(), bench, passes=bench.settings.steps)


@pytest.mark.benchmark(group="attack")
def test_attack_cell(bench, measure):
    measure(bench.cell(), bench, passes=bench.settings.steps)


@pytest.mark.benchmark(group="attack")
def test_art_basic_iterative_method(bench, measure):
    measure(bench.art_bim(), bench, passes=bench.settings.steps)


@pytest.mark.benchmark(group="attack-images")
@pytest.mark.parametrize("images", [8, 16, 32])
def test_ifgsm_cost_with_images(images, measure):
    bench = bench_for(images=images, batch=images)
    measure(bench.ifgsm(), bench, passes=bench.settings.steps)


@pytest.mark.benchmark(group="attack-steps")
@pytest.mark.parametrize("steps", [1, 5, 10, 20])
def test_ifgsm_cost_with_steps(steps, measure):
    bench = bench_for(images=16, batch=16, steps=steps)
    measure(bench.ifgsm(), bench, passes=steps)
