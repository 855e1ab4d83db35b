"""Reference models: shapes, parameter counts, normalisation inside, mask size, cam layer, init reporting."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustbench_us.errors import CheckpointError
from robustbench_us.plugins import default_registry
from robustbench_us_plugins.resnet import (IMAGENET_MEAN, IMAGENET_STD, ResNet50Classifier, count_parameters,
                                           make_resnet50, make_resnet50_mtl)

# torchvision's ResNet-50 has 25,557,032 parameters; without its 1000-way fc (2048·1000 + 1000) that is:
RESNET50_ENCODER_PARAMETERS = 23_508_032


@pytest.fixture(scope="module")
def mtl() -> ResNet50Classifier:
    torch.manual_seed(0)
    return make_resnet50_mtl(input_size=64).eval()


@pytest.fixture(scope="module")
def x64() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_registry_builds_both_reference_models():
    registry = default_registry()
    mtl = registry.create("model", "resnet50-mtl", input_size=64)
    single = registry.create("model", "resnet50", input_size=64)
    assert (mtl.has_segmentation, single.has_segmentation) == (True, False)
    assert mtl.input_size == single.input_size == 64
    assert mtl.init == single.init == "scratch"
    assert registry.get("model", "resnet50-mtl").has_segmentation is True
    assert registry.get("model", "resnet50").has_segmentation is False


def test_parameter_counts(mtl):
    assert count_parameters(mtl.encoder) == RESNET50_ENCODER_PARAMETERS
    assert count_parameters(mtl.head) == 2048 * 2 + 2
    single = make_resnet50(input_size=64)
    assert count_parameters(single) == RESNET50_ENCODER_PARAMETERS + 4098
    # Decoder: five Conv3×3+BN blocks 2048→256→128→64→32→16, then a 1×1 conv to one channel.
    widths = [2048, 256, 128, 64, 32, 16]
    expected = sum(9 * a * b + b + 2 * b for a, b in zip(widths, widths[1:])) + 16 + 1
    assert count_parameters(mtl.decoder) == expected
    assert count_parameters(mtl) == RESNET50_ENCODER_PARAMETERS + 4098 + expected


def test_normalisation_is_inside_the_model(mtl, x64):
    """forward([0, 1] image) == head(encoder((x - ImageNet mean) / std)): callers never normalise."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        by_hand = mtl.head(mtl.encoder((x64 - mean) / std).mean(dim=(2, 3)))
        assert torch.allclose(mtl(x64), by_hand, atol=1e-5)
        # Feeding already-normalised pixels gives a different answer: the model normalises again.
        assert not torch.allclose(mtl((x64 - mean) / std), by_hand, atol=1e-3)
    assert {"normalize.mean", "normalize.std"} <= set(mtl.state_dict())  # travels with checkpoints


@pytest.mark.parametrize("size", [64, 96])
def test_mask_head_output_matches_input_size(mtl, size):
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        logits, masks = mtl.forward_both(x)
        assert logits.shape == (2, 2)
        assert masks.shape == (2, 1, size, size)
        assert mtl.segment(x).shape == (2, 1, size, size)
        # No resize happens for sizes divisible by 32: the decoder alone reaches the input size.
        assert mtl.decoder(mtl.features(x)).shape[-2:] == (size, size)


def test_mask_size_for_input_not_divisible_by_32(mtl):
    with torch.no_grad():
        assert mtl.segment(torch.rand(1, 3, 80, 80)).shape == (1, 1, 80, 80)


def test_forward_both_equals_separate_calls(mtl, x64):
    with torch.no_grad():
        logits, masks = mtl.forward_both(x64)
        assert torch.allclose(logits, mtl(x64), atol=1e-6)
        assert torch.allclose(masks, mtl.segment(x64), atol=1e-6)


def test_cam_layer_is_last_stage_at_stride_32(mtl, x64):
    seen = {}

    def record(module, inputs, output) -> None:
        seen["shape"] = output.shape

    handle = mtl.cam_layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            mtl(x64)
    finally:
        handle.remove()
    assert mtl.cam_layer is mtl.encoder.layer4
    assert seen["shape"] == (2, 2048, 2, 2)
    assert not any(m.inplace for m in mtl.modules() if isinstance(m, nn.ReLU))  # hook-safe


def test_single_task_model_has_no_segment():
    model = make_resnet50(input_size=64).eval()
    assert model.decoder is None
    with torch.no_grad():
        logits, masks = model.forward_both(torch.rand(1, 3, 64, 64))
    assert logits.shape == (1, 2) and masks is None
    with pytest.raises(AttributeError, match="no segmentation head"):
        model.segment(torch.rand(1, 3, 64, 64))


def test_gradients_reach_the_input(mtl, x64):
    x = x64.clone().requires_grad_(True)
    mtl(x)[:, 1].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_imagenet_weights_absent_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(CheckpointError, match=r"not in the torch hub cache.*resnet50-0676ba61\.pth.*from scratch"):
        make_resnet50_mtl(input_size=64, pretrained="imagenet")


def test_imagenet_weights_from_cache_and_file(mtl, tmp_path, monkeypatch):
    # A stand-in for torchvision's file: encoder keys are torchvision's, plus its 1000-way fc (ignored).
    reference = {k: v + 0.5 for k, v in mtl.encoder.state_dict().items()}
    reference |= {"fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    cache = tmp_path / "checkpoints"
    cache.mkdir()
    torch.save(reference, cache / "resnet50-0676ba61.pth")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    model = make_resnet50_mtl(input_size=64, pretrained="imagenet")
    assert model.init == f"imagenet:{cache / 'resnet50-0676ba61.pth'}"
    assert torch.equal(model.encoder.layer3[2].conv2.weight, reference["layer3.2.conv2.weight"])
    from safetensors.torch import save_file

    save_file({"module." + k: v for k, v in reference.items()}, str(tmp_path / "r50.safetensors"))
    single = make_resnet50(input_size=64, pretrained=str(tmp_path / "r50.safetensors"))
    assert single.init == f"imagenet:{tmp_path / 'r50.safetensors'}"
    assert torch.equal(single.encoder.conv1.weight, reference["conv1.weight"])


def test_wrong_pretrained_file_is_refused(tmp_path):
    from torchvision.models import resnet18

    torch.save(resnet18(weights=None).state_dict(), tmp_path / "r18.pth")
    with pytest.raises(CheckpointError, match="do not fit ResNet50Encoder"):
        make_resnet50(input_size=64, pretrained=str(tmp_path / "r18.pth"))
    with pytest.raises(CheckpointError, match="does not exist"):
        make_resnet50(input_size=64, pretrained=str(tmp_path / "absent.pth"))
