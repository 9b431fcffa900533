"""Labelled scans are calibrated as the analysis sees a scan: on the model card's grid, with
scores bounded by the scan's body mask (docs/model.md)."""

import numpy as np

from napari_consign.cases import find_case_pairs, read_pair
from napari_consign.io import read_volume
from napari_consign.models import load_builtin_model
from napari_consign.models.card import card_of
from napari_consign.resample import plan_grid
from napari_consign.scan_sampling import ScanJob, sample_scan


def test_labelled_scan_is_read_on_the_model_grid(cases_dir, grid):
    card = card_of(load_builtin_model())
    image, mask = find_case_pairs(cases_dir)[0]
    source = read_volume(image)
    plan = plan_grid(source.array.shape, tuple(source.geometry.spacing_zyx), card.spacing_zyx)
    assert not plan.identity  # 0.8 x 0.9 x 2.5 mm against the card's 2 mm
    images, masks, n_empty, body = read_pair(image, mask, card)
    on_model = plan.to_model_labels((read_volume(mask).array != 0).astype(np.uint8))
    keep = on_model.any(axis=(1, 2))
    assert images.shape == masks.shape == body.shape == (keep.sum(), *on_model.shape[1:])
    assert np.array_equal(masks, on_model[keep]) and n_empty == (~keep).sum()
    assert images.shape[0] == 4 and images.shape[1:] != (grid["size"], grid["size"])
    # without a card, the scan is read on its own grid (the last of 4 slices is empty)
    plain = read_pair(image, mask)
    assert plain[0].shape == (3, grid["size"], grid["size"]) and plain[3] is None


def test_sampled_scores_are_zero_outside_the_body(cases_dir, one_torch_thread):
    image, mask = find_case_pairs(cases_dir)[1]
    model = load_builtin_model()
    job = ScanJob(0, image, mask, 5, (), "mc_dropout", 2, "cpu", False)
    out = sample_scan(job)
    _, _, _, body = read_pair(image, mask, card_of(model))
    scores = out["data"].scores
    assert scores.shape == body.shape and (~body).any()
    assert not scores[~body].any()
    assert scores[body].any()
