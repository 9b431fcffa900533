"""Device resolution: auto, explicit requests, the environment override."""

from __future__ import annotations

import pytest
import torch

from napari_consign.models.device import ENV_VAR, DeviceError, available_devices, resolve_device


def test_cpu_always_works():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert "cpu" in available_devices()


def test_auto_picks_a_working_device(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    dev = resolve_device("auto")
    expected = "cuda" if torch.cuda.is_available() else dev.type
    assert dev.type == expected
    assert resolve_device(None) == dev


def test_env_overrides_auto_only(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "cpu")
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(ENV_VAR, "tpu")
    with pytest.raises(DeviceError, match=f"{ENV_VAR}='tpu'.*unknown device"):
        resolve_device("auto")
    assert resolve_device("cpu") == torch.device("cpu")  # explicit argument wins


def test_unknown_device():
    with pytest.raises(DeviceError, match="unknown device 'gpu0': use one of auto, cpu"):
        resolve_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda:1")


def test_mps_requested_without_mps():
    if "mps" in available_devices():
        pytest.skip("MPS present")
    with pytest.raises(DeviceError, match="MPS is not available"):
        resolve_device("mps")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_explicit_and_bad_index():
    assert resolve_device("cuda").type == "cuda"
    with pytest.raises(DeviceError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
