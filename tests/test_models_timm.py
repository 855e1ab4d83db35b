"""The timm:* family: any timm backbone with the model contract, generic cam layer, strict local weights."""

from __future__ import annotations

import pytest
import torch

from robustbench_us.errors import CheckpointError, PluginError
from robustbench_us.plugins import default_registry


def _create(name: str, **options):
    torch.manual_seed(0)
    return default_registry().create("model", name, **options).eval()


@pytest.mark.parametrize(("variant", "cam_name"), [("resnet10t", "layer4"), ("convnext_atto", "stages.3"),
                                                   ("mobilenetv3_small_050", "blocks.5")])
def test_family_builds_any_cnn_with_the_contract(variant, cam_name):
    model = _create(f"timm:{variant}", input_size=64, segmentation=True)
    assert model.input_size == 64 and model.has_segmentation and model.init == "scratch"
    assert model.cam_layer is model.backbone.get_submodule(cam_name) and model.cam_layout == "nchw"
    seen = {}

    def record(module, inputs, output) -> None:
        seen["cam"] = output

    handle = model.cam_layer.register_forward_hook(record)
    try:
        with torch.no_grad():
            x = torch.rand(2, 3, 64, 64)
            logits, masks = model.forward_both(x)
            features = model.features(x)
    finally:
        handle.remove()
    assert logits.shape == (2, 2) and masks.shape == (2, 1, 64, 64)
    assert seen["cam"].shape == features.shape  # the cam layer is the activation the head pools
    assert torch.allclose(model(x), logits, atol=1e-5)
    assert model.segment(x).shape == (2, 1, 64, 64)


def test_normalisation_uses_the_architectures_statistics():
    import timm

    model = _create("timm:resnet10t", input_size=64)
    cfg = timm.models.get_pretrained_cfg("resnet10t")
    assert torch.allclose(model.normalize.mean.flatten(), torch.tensor(cfg.mean))
    assert torch.allclose(model.normalize.std.flatten(), torch.tensor(cfg.std))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        by_hand = model.head(model.backbone.forward_head(
            model.backbone.forward_features((x - model.normalize.mean) / model.normalize.std), pre_logits=True))
        assert torch.allclose(model(x), by_hand, atol=1e-5)
    assert not model.has_segmentation and model.decoder is None
    with pytest.raises(AttributeError, match="segmentation=True"):
        model.segment(x)


def test_transformer_classifies_but_refuses_a_decoder():
    model = _create("timm:vit_tiny_patch16_224", input_size=32)
    assert model.cam_layout == "nlc"
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 2)
    with pytest.raises(PluginError, match="token features"):
        _create("timm:vit_tiny_patch16_224", input_size=32, segmentation=True)


def test_unknown_architecture_suggests_names():
    with pytest.raises(PluginError, match=r"Unknown timm architecture 'resnt18'.*'resnet18'"):
        _create("timm:resnt18")


def test_pretrained_file_loads_strictly(tmp_path):
    import timm
    from safetensors.torch import save_file

    source = timm.create_model("resnet10t")  # 1000-way head, like a real ImageNet file
    save_file(source.state_dict(), str(tmp_path / "r10t.safetensors"))
    model = _create("timm:resnet10t", input_size=64, pretrained=str(tmp_path / "r10t.safetensors"))
    assert model.init == f"imagenet:{tmp_path / 'r10t.safetensors'}"
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in source.state_dict().items() if not k.startswith("fc."))
    assert not any(k.startswith("fc.") for k in own)  # the 1000-way head was dropped after loading
    # A file of another architecture is refused, even though timm would load it partially.
    with pytest.raises(CheckpointError, match="do not fit timm:resnet14t"):
        _create("timm:resnet14t", input_size=64, pretrained=str(tmp_path / "r10t.safetensors"))


def test_imagenet_without_cache_explains_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"not cached here.*pass pretrained="):
        _create("timm:resnet10t", input_size=64, pretrained="imagenet")
