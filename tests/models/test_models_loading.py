"""Model loading: TorchScript and state dicts round trip; bad files give clear errors."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch
from models_helpers import make_tiny_unet
from torch import nn

from napari_consign.models.loading import (
    ModelLoadError,
    check_model_output,
    file_sha256,
    load_model,
)
from napari_consign.models.unet import UNet, infer_config_from_state_dict


def test_torchscript_round_trip(tmp_path, tiny_unet):
    path = tmp_path / "net.pt"
    torch.jit.script(tiny_unet).save(str(path))
    loaded = load_model(path, device="cpu")
    assert loaded.source == "torchscript"
    assert loaded.identity == file_sha256(path)
    assert loaded.out_channels == 2 and loaded.output == "logits"
    x = torch.rand(2, 1, 48, 40)
    with torch.inference_mode():
        assert torch.allclose(loaded.module(x), tiny_unet(x), atol=1e-6)


def test_state_dict_round_trip_infers_architecture(tmp_path, tiny_unet):
    path = tmp_path / "weights.pt"
    torch.save(tiny_unet.state_dict(), path)
    cfg = infer_config_from_state_dict(tiny_unet.state_dict(), dropout=0.3)
    assert cfg == tiny_unet.config
    loaded = load_model(path)
    assert loaded.source == "state_dict" and loaded.size_divisor == 4
    x = torch.rand(1, 1, 32, 32)
    with torch.inference_mode():
        assert torch.equal(loaded.module(x), tiny_unet(x))


def test_state_dict_with_sidecar_json(tmp_path):
    net = make_tiny_unet(norm="group", dropout=0.1)
    path = tmp_path / "g.pt"
    torch.save({"state_dict": net.state_dict()}, path)  # a common checkpoint layout
    meta = {"config": net.config.to_dict(), "normalization": {"kind": "zscore"}}
    (tmp_path / "g.json").write_text(json.dumps(meta))
    loaded = load_model(path)
    assert loaded.module.config.norm == "group"
    assert loaded.module.config.dropout == pytest.approx(0.1)
    assert loaded.normalization == {"kind": "zscore"}


@pytest.mark.parametrize(
    "content",
    [b"this is a text file, not a model\n", os.urandom(4096), b""],
    ids=["text", "random-bytes", "empty"],
)
def test_not_a_model_file(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=r"model\.pt.*(not a model file|expected)"):
        load_model(path)


def test_truncated_torchscript(tmp_path, tiny_unet):
    path = tmp_path / "cut.pt"
    torch.jit.script(tiny_unet).save(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cut\.pt"):
        load_model(path)


def test_pickled_module_is_refused(tmp_path, tiny_unet):
    path = tmp_path / "whole.pt"
    torch.save(tiny_unet, path)  # pickles the Python object: must not be unpickled
    with pytest.raises(ModelLoadError, match="pickled Python objects"):
        load_model(path)


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ModelLoadError, match=r"evil\.pkl"):
        load_model(path)


def test_mismatched_state_dict(tmp_path, tiny_unet):
    state = tiny_unet.state_dict()
    state.pop("head.bias")
    path = tmp_path / "broken.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match="does not match the built-in UNet"):
        load_model(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model file"):
        load_model(tmp_path / "nope.pt")
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(tmp_path)


class _Shrinks(nn.Module):
    def forward(self, x):
        return torch.nn.functional.avg_pool2d(x.repeat(1, 3, 1, 1), 5, stride=1)


def test_wrong_output_shape_clear_error(tmp_path):
    path = tmp_path / "shrinks.pt"
    torch.jit.script(_Shrinks()).save(str(path))
    msg = (
        r"model returned shape \(1, 3, 60, 60\) for input \(1, 1, 64, 64\): "
        r"expected \(1, C>=1, 64, 64\) probabilities or logits"
    )
    with pytest.raises(ModelLoadError, match=msg):
        load_model(path)


class _Probs(nn.Module):
    def forward(self, x):
        return torch.cat([1 - x.clamp(0, 1), x.clamp(0, 1)], 1)


def test_output_kind_detection():
    assert check_model_output(_Probs()) == (2, "probabilities")
    assert check_model_output(UNet(base_channels=4, levels=2)) == (2, "logits")


def test_forward_failure_names_the_file(tmp_path):
    net = UNet(in_channels=3, base_channels=4, levels=2)
    path = tmp_path / "rgb.pt"
    torch.jit.script(net).save(str(path))
    with pytest.raises(ModelLoadError, match=r"rgb.pt: model failed on a probe input"):
        load_model(path)
    assert load_model(path, in_channels=3).in_channels == 3
