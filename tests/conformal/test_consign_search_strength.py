"""The fast membership search against a slow exhaustive reference (docs/methods.md §5.3).

The reference hard-checks a dense grid of every box (with its vertices), computing the
beta-score in numpy from the decomposition alone. The fast search must never declare "not a
member" where the reference finds a member, and each witness it returns must pass the same
numpy check and lie in the box.
"""

import itertools

import numpy as np
import pytest

from napari_consign.conformal.consign_decomposition import decompose_units
from napari_consign.conformal.consign_membership import MembershipChecker
from napari_consign.conformal.consign_search_settings import SearchSettings
from napari_consign.conformal.consign_synthetic import low_rank_cases
from napari_consign.conformal.set_metrics import beta_scores

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: grid points per axis of the reference search, by K
GRID = {2: 41, 3: 17}


def dense_grid(lower, upper, n):
    axes = [np.linspace(a, b, n) for a, b in zip(lower, upper, strict=True)]
    return np.array(list(itertools.product(*axes)))


@pytest.mark.slow
@pytest.mark.parametrize("k", [2, 3])
def test_fast_search_finds_every_member_the_dense_grid_finds(k):
    data = low_rank_cases(24, size=16, n_samples=8, seed=10 + k)
    samples, masks = data["samples"], data["masks"]
    decomps = decompose_units(samples, k, binary=True)
    rng = np.random.default_rng(k)
    units, lower, upper, ref = [], [], [], []
    for i, d in enumerate(decomps):
        if not masks[i].any():
            continue
        for lam in (0.02, 0.05, 0.1, 0.2, 0.4):
            lo, hi = d.box(0.1, lam * rng.uniform(0.8, 1.25))
            scores = beta_scores(masks[i], d.labels(dense_grid(lo, hi, GRID[k])))
            units.append(i)
            lower.append(lo)
            upper.append(hi)
            ref.append(scores)
    units, lower, upper = np.array(units), np.array(lower), np.array(upper)
    found_any = 0
    for beta in (0.8, 0.9, 0.95):
        member = np.array([s.max() > beta for s in ref])
        checker = MembershipChecker(decomps, masks, beta, range(len(decomps)), device="cpu")
        found, witness = checker.search(units, lower, upper)
        missed = np.flatnonzero(member & ~found)
        assert missed.size == 0, (beta, missed, [ref[j].max() for j in missed])
        for j in np.flatnonzero(found):
            d, c = decomps[units[j]], witness[j]
            assert np.all((lower[j] <= c) & (c <= upper[j]))
            assert beta_scores(masks[units[j]], d.labels(c)) > beta
        found_any += member.sum()
        assert 0 < member.sum() < member.size  # the cases are borderline, not trivial
    assert found_any > 0


def test_authors_strategy_returns_valid_witnesses():
    data = low_rank_cases(6, size=16, n_samples=8, seed=3)
    decomps = decompose_units(data["samples"], 2, binary=True)
    settings = SearchSettings.authors(n_lhs=200, max_steps=100)
    checker = MembershipChecker(decomps, data["masks"], 0.8, range(6), settings, "cpu")
    lower, upper = zip(*(d.box(0.1, 0.3) for d in decomps), strict=True)
    found, witness = checker.search(np.arange(6), np.array(lower), np.array(upper))
    assert found.any()
    for i in np.flatnonzero(found):
        assert beta_scores(data["masks"][i], decomps[i].labels(witness[i])) > 0.8
