"""Input corruptions: level 0 is the identity, masks are honest, results are reproducible."""

from __future__ import annotations

import pytest
import torch

from nowcast.perturb import DEFAULT_LEVELS, PERTURBATION_NAMES, Perturbation, get_perturbation


def _batch():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 5, 1, 20, 20, generator=g)
    mask = torch.ones_like(x)
    mask[:, :, :, :2] = 0  # a static blind strip
    return x * mask, mask


@pytest.mark.parametrize("name", PERTURBATION_NAMES)
def test_level_zero_leaves_inputs_unchanged(name):
    x, mask = _batch()
    x2, m2 = Perturbation(name, 0.0, seed=4)(x, mask, batch_index=0)
    assert torch.equal(x2, x) and torch.equal(m2, mask)


@pytest.mark.parametrize("name", PERTURBATION_NAMES)
def test_deterministic_from_seed_and_inputs_untouched(name):
    x, mask = _batch()
    x0, m0 = x.clone(), mask.clone()
    level = DEFAULT_LEVELS[name][2]
    a = Perturbation(name, level, seed=7)(x, mask, batch_index=3)
    b = Perturbation(name, level, seed=7)(x, mask, batch_index=3)
    c = Perturbation(name, level, seed=8)(x, mask, batch_index=3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    assert torch.equal(x, x0) and torch.equal(mask, m0)


def test_dropped_frames_are_zeroed_and_marked_missing():
    x, mask = _batch()
    x2, m2 = Perturbation("drop_frames", 2, seed=0)(x, mask, batch_index=0)
    frame_valid = (m2.reshape(3, 5, -1) > 0).any(-1)
    assert (frame_valid.sum(1) == 3).all()  # 5 frames, 2 dropped per sample
    dropped = ~frame_valid
    assert (x2[dropped] == 0).all() and (m2[dropped] == 0).all()
    assert torch.equal(x2[~dropped], x[~dropped])


def test_drop_frames_keeps_one_observed_frame():
    x, mask = _batch()
    _, m2 = Perturbation("drop_frames", 10, seed=0)(x, mask, batch_index=0)
    assert ((m2.reshape(3, 5, -1) > 0).any(-1).sum(1) == 1).all()


def test_missing_region_size_and_mask():
    x, mask = _batch()
    x2, m2 = Perturbation("missing_region", 0.5, seed=0)(x, mask, batch_index=0)
    lost = (mask > 0) & (m2 == 0)
    for i in range(3):
        # a 10 x 10 square (minus any overlap with the blind strip), the same in every frame
        per_frame = lost[i, :, 0].sum(dim=(-2, -1))
        assert (per_frame == per_frame[0]).all() and 80 <= int(per_frame[0]) <= 100
    assert (x2[m2 == 0] == 0).all()


def test_salt_pepper_fraction_and_values():
    x, mask = _batch()
    x2, m2 = Perturbation("salt_pepper", 0.2, seed=0)(x, mask, batch_index=0)
    changed = x2 != x
    assert torch.equal(m2, mask)
    assert ((x2[changed] == 0) | (x2[changed] == 1)).all()
    frac = changed.sum() / (mask > 0).sum()
    assert 0.17 < float(frac) < 0.23
    assert not changed[mask == 0].any()


def test_gaussian_noise_std_and_range():
    x = torch.full((2, 4, 1, 40, 40), 0.5)
    x2, _ = Perturbation("gaussian", 0.05, seed=0)(x, None, batch_index=0)
    assert float((x2 - x).std()) == pytest.approx(0.05, rel=0.05)
    x3, _ = Perturbation("gaussian", 2.0, seed=0)(x, None, batch_index=0)
    assert x3.min() >= 0 and x3.max() <= 1


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="gaussian, salt_pepper"):
        get_perturbation("blur")


def test_negative_level_rejected():
    with pytest.raises(ValueError, match="level"):
        Perturbation("gaussian", -0.1)
