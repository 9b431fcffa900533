"""The bundled MC-dropout UNet: loads safely, keeps its identity, reaches its reported Dice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_consign import _sample_data as sd
from napari_consign.models import Moments, Sampler, load_builtin_model
from napari_consign.models.loading import builtin_model_files, file_sha256


@pytest.fixture(scope="module")
def model():
    return load_builtin_model(device="cpu")


@pytest.fixture(scope="module")
def info():
    return json.loads(builtin_model_files()[1].read_text())


@pytest.fixture(scope="module")
def test_cases():
    cases = sd.load_cases("test")
    return cases["images"][:32], cases["masks"][:32]


def _dice(pred, truth):
    p = pred.reshape(len(pred), -1)
    t = truth.reshape(len(truth), -1).astype(bool)
    return (2 * (p & t).sum(1) / np.maximum(p.sum(1) + t.sum(1), 1)).mean()


def test_identity_and_description(model, info):
    weights, _ = builtin_model_files()
    assert model.source == "builtin"
    assert model.identity == info["sha256"] == file_sha256(weights)
    assert model.normalization["kind"] == "percentile"
    assert model.module.config.to_dict() == info["config"]
    assert model.out_channels == 2 and model.output == "logits"


def test_reported_dice_eval_mode(model, info, test_cases):
    images, masks = test_cases
    sampler = Sampler(model, mode="tta", n_samples=1, device="cpu")  # identity: eval mode
    mean = sampler.run(images, [Moments()])["mean"]
    dice = _dice(mean >= 0.5, masks)
    assert dice == pytest.approx(info["evaluation"]["dice_eval_mode_first32"], abs=0.01)


@pytest.mark.slow
def test_reported_dice_mc_mean(model, info, test_cases):
    images, masks = test_cases
    ev = info["evaluation"]
    sampler = Sampler(model, n_samples=ev["mc_samples"], device="cpu", seed=0)
    out = sampler.run(images, [Moments()])
    dice = _dice(out["mean"] >= 0.5, masks)
    assert dice == pytest.approx(ev["dice_mc_mean_first32"], abs=0.01)
    assert out["var"].max() > 1e-3  # MC dropout gives real spread
