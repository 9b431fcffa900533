"""Device resolution: auto, explicit requests, the environment override."""

from __future__ import annotations

import pytest
import torch

from napari_consign.conformal import device as device_module
from napari_consign.conformal.device import ENV_VAR, DeviceError, available_devices, resolve_device
from napari_consign.conformal.errors import ConformalInputError


def test_cpu_always_works():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    assert "cpu" in available_devices()


@pytest.fixture
def fake_devices(monkeypatch):
    """Pretend which accelerators exist and which pass the probe allocation.

    ``set(cuda=..., mps=..., working=...)`` patches ``torch.cuda.is_available`` and
    ``torch.backends.mps.is_available`` (what the device module asks) and the probe, so the
    auto order is tested on any machine.
    """
    monkeypatch.delenv(ENV_VAR, raising=False)
    probed = []

    def configure(cuda: bool, mps: bool, working=("cpu", "cuda", "mps")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 1 if cuda else 0)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

        def probe(dev):
            probed.append(dev.type)
            return None if dev.type in working else f"{dev.type} broken"

        monkeypatch.setattr(device_module, "_probe", probe)
        probed.clear()
        return probed

    return configure


@pytest.mark.parametrize(
    ("cuda", "mps", "working", "expected", "probes"),
    [
        (True, True, ("cuda", "mps"), "cuda", ["cuda"]),  # CUDA first, MPS not even tried
        (True, False, ("cuda",), "cuda", ["cuda"]),
        (False, True, ("mps",), "mps", ["mps"]),  # then MPS
        (True, True, ("mps",), "mps", ["cuda", "mps"]),  # CUDA reported but broken
        (False, False, (), "cpu", []),  # then CPU
        (True, True, (), "cpu", ["cuda", "mps"]),  # both broken: CPU
    ],
)
def test_auto_order_cuda_then_mps_then_cpu(fake_devices, cuda, mps, working, expected, probes):
    probed = fake_devices(cuda, mps, working)
    assert resolve_device("auto") == torch.device(expected)
    assert probed == probes
    assert resolve_device(None).type == expected


def test_float64_work_skips_mps(fake_devices):
    """The CONSIGN search needs float64, which MPS lacks: auto passes it by, explicit refuses."""
    probed = fake_devices(cuda=False, mps=True)
    assert resolve_device("auto", float64=True) == torch.device("cpu")
    assert probed == []
    with pytest.raises(DeviceError, match="no float64"):
        resolve_device("mps", float64=True)
    fake_devices(cuda=True, mps=True)
    assert resolve_device("auto", float64=True) == torch.device("cuda")


def test_device_error_is_bad_input():
    """One error type for every device request, caught by the CLI as bad input (exit 2)."""
    assert issubclass(DeviceError, ConformalInputError)
    with pytest.raises(ConformalInputError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")


def test_available_devices_lists_what_exists(fake_devices):
    fake_devices(cuda=True, mps=True)
    assert available_devices() == ["cpu", "cuda:0", "mps"]
    fake_devices(cuda=False, mps=False)
    assert available_devices() == ["cpu"]


def test_auto_on_this_machine(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    dev = resolve_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    assert torch.ones(2, device=dev).sum().item() == 2  # it works


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
