"""S-HR-VQVAE: exact quantiser, straight-through gradient, causal ST-PixelCNN, seeded members."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nowcast.configs import ModelConfig, load_config
from nowcast.models import get_model
from nowcast.modules.hrvq import HierarchicalQuantizer
from nowcast.modules.st_pixelcnn import STPixelCNN

# 16 x 16 frames -> 4 x 4 latent grid (two stride-2 convs), 3 layers x 4 codewords
TINY = ModelConfig(
    name="shrvqvae",
    image_size=16,
    in_frames=3,
    out_frames=2,
    vq_channels=(4, 4),
    vq_latent_dim=2,
    vq_layers=3,
    vq_codebook_size=4,
    vq_betas=(0.25, 0.25, 0.25, 0.25),
    pixelcnn_channels=8,
    pixelcnn_blocks=2,
    pixelcnn_kernel=3,
    pixelcnn_heads=2,
    pixelcnn_context=2,
    ensemble_members=2,
)
T_IN = torch.tensor([[-12.0, -6.0, 0.0]] * 2)
T_OUT = torch.tensor([[6.0, 12.0]] * 2)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(old)


def _dyadic_quantizer() -> HierarchicalQuantizer:
    """Codewords of powers of two, each layer 8 times finer: sums are exact in float32."""
    q = HierarchicalQuantizer(dim=2, layers=3, size=4, betas=(0.25,) * 4)
    base = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    with torch.no_grad():
        for i in range(3):
            q.codebooks[i].copy_(base.repeat(4**i, 1) * 8.0 ** (1 - i))
    return q


def test_quantiser_returns_a_codeword_path_exactly_when_fed_one():
    q = _dyadic_quantizer()
    # paths (1, 3, 1, 2): position 0 takes codes (2, 1, 3), position 1 codes (0, 3, 0)
    paths = torch.tensor([[[[2, 0]], [[9, 3]], [[39, 12]]]])
    z = q.lookup(paths)
    assert z[0, :, 0, 0].tolist() == [-8.0 + 1.0 - 0.125, 8.0 - 1.0 - 0.125]
    out = q(z)
    assert torch.equal(out["paths"], paths)
    assert out["codes"][0, :, 0].tolist() == [[2, 0], [1, 3], [3, 0]]
    assert torch.equal(out["quantized"], z) and torch.equal(out["combined"], z)
    # eq. 5 terms of layers 1, 2 (layer i's codeword against the whole residual above it,
    # mean over the 4 latent values, times 1 + beta_i); layer 3 and eq. 4's e_C terms are 0
    layer1 = (0.875**2 + 1.125**2 + 2 * 0.875**2) / 4
    layer2 = 4 * 0.125**2 / 4
    assert float(out["loss"].detach()) == 1.25 * (layer1 + layer2)


def test_straight_through_gradient_is_the_identity():
    q = _dyadic_quantizer()
    z = (torch.randn(2, 2, 3, 3) * 5).requires_grad_(True)
    g = torch.randn(2, 2, 3, 3)
    (q(z)["quantized"] * g).sum().backward()
    assert torch.equal(z.grad, g)


def test_hierarchy_chooses_each_codebook_by_the_code_above():
    q = _dyadic_quantizer()
    paths = torch.tensor([[[[3]], [[13]], [[53]]]])  # codes 3, then 1 in codebook 3, then 1
    out = q(q.lookup(paths))
    assert torch.equal(out["paths"] // 4, torch.tensor([[[[0]], [[3]], [[13]]]]))
    assert [int(u.sum()) for u in q.usage(out["paths"])] == [1, 1, 1]
    assert int(q.usage(out["paths"])[2][53]) == 1


def _order(t: int, p: int, i: int, hw: int, n: int) -> int:
    return (t * hw + p) * n + i


def test_changing_a_later_code_never_changes_an_earlier_logit():
    prior = STPixelCNN(layers=3, size=4, channels=8, blocks=2, kernel=3, heads=2, context=2)
    rng = np.random.default_rng(1)
    t_n, n, h, w = 4, 3, 4, 4
    paths = torch.stack(
        [torch.from_numpy(rng.integers(0, 4 ** (i + 1), (1, t_n, h, w))) for i in range(n)], 2
    )
    base = prior(paths)  # (1, T, n, M, h, w)
    for t0, r0, c0, l0 in ((2, 1, 2, 0), (1, 0, 0, 1), (3, 3, 3, 1), (2, 2, 0, 2)):
        changed = paths.clone()
        changed[0, t0, l0, r0, c0] = (changed[0, t0, l0, r0, c0] + 1) % 4 ** (l0 + 1)
        new = prior(changed)
        k0 = _order(t0, r0 * w + c0, l0, h * w, n)
        earlier, later = [], []
        for t in range(t_n):
            for p in range(h * w):
                for i in range(n):
                    same = torch.equal(
                        base[0, t, i, :, p // w, p % w], new[0, t, i, :, p // w, p % w]
                    )
                    (earlier if _order(t, p, i, h * w, n) <= k0 else later).append(same)
        assert all(earlier), (t0, r0, c0, l0)
        assert not all(later)  # the code does reach later positions


def test_a_window_of_context_frames_gives_the_full_sequence_logits():
    prior = STPixelCNN(layers=2, size=3, channels=8, blocks=1, kernel=3, heads=2, context=2)
    paths = torch.stack([torch.randint(0, 3 ** (i + 1), (2, 6, 3, 3)) for i in range(2)], 2)
    full = prior(paths)
    window = prior(paths[:, 3:6], first=2)  # frames 3, 4 as context, logits of frame 5
    torch.testing.assert_close(window[:, 0], full[:, 5], rtol=0, atol=1e-5)


def test_a_latent_made_of_codewords_reconstructs_exactly():
    model = get_model("shrvqvae", TINY)
    with torch.no_grad():
        for i, cb in enumerate(_dyadic_quantizer().codebooks):
            model.quantizer.codebooks[i].copy_(cb)
    codes = torch.randint(0, 4, (3, 3, 4, 4))  # local codes of 3 frames, 3 layers
    paths = torch.stack([codes[:, 0], codes[:, 0] * 4 + codes[:, 1]], 1)
    paths = torch.cat((paths, (paths[:, 1] * 4 + codes[:, 2])[:, None]), 1)
    latent = model.quantizer.lookup(paths)
    out = model.quantizer(latent)
    assert torch.equal(out["paths"], paths)  # quantise(codewords) returns the same codes
    frames = model.decode(out["quantized"]).clamp(0, 1)
    assert torch.equal(frames, model.decode_paths(paths))


def test_seeds_make_the_members_reproducible_and_independent_of_their_number():
    model = get_model("shrvqvae", TINY).eval()
    x = torch.rand(2, 3, 1, 16, 16)
    a = model(x, T_IN, T_OUT, n_members=3, seed=5)
    assert a.shape == (2, 3, 2, 1, 16, 16)
    assert torch.equal(a, model(x, T_IN, T_OUT, n_members=3, seed=5))
    assert torch.equal(a[:, :2], model(x, T_IN, T_OUT, n_members=2, seed=5))
    codes = model.sample_paths(x, 2, 3, seed=5)  # (B, N, T_out, n, h, w)
    assert torch.equal(codes, model.sample_paths(x, 2, 3, seed=5))
    assert not torch.equal(codes, model.sample_paths(x, 2, 3, seed=6))
    assert not torch.equal(codes[:, 0], codes[:, 1])  # members are different draws
    assert torch.equal(
        codes // 4, torch.cat((torch.zeros_like(codes[:, :, :, :1]), codes[:, :, :, :-1]), 3)
    )
    mean = model(x, T_IN, T_OUT)  # plain call: the mean of the default 2 members, seed 0
    torch.testing.assert_close(mean, model(x, T_IN, T_OUT, n_members=2, seed=0).mean(1))
    assert model.ensemble and not model.continuous_time


@pytest.mark.parametrize("mode", ["disjoint", "joint"])
def test_both_trainings_lower_their_objective_on_one_batch(mode):
    model = get_model("shrvqvae", dataclasses.replace(TINY, shrvqvae_training=mode))
    seq = torch.full((2, 5, 1, 16, 16), 0.1)
    for i in range(5):
        seq[:, i, 0, 4:10, 1 + 2 * i : 7 + 2 * i] = 0.8
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    parts = []
    for _ in range(60):
        out = model(seq[:, :3], T_IN, T_OUT, target=seq[:, 3:])
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        err = float((out["prediction"] - seq[:, 3:]).pow(2).mean())
        parts.append((float(out["recon"]), float(out["prior"]), err))
    assert out["prediction"].shape == (2, 2, 1, 16, 16)
    assert [u.numel() for u in out["usage"]] == [4, 16, 64]
    (r0, p0, e0), (r1, p1, e1) = parts[0], parts[-1]
    # the codes move while HR-VQVAE learns, so the prior's loss is noisy: generous bounds
    assert r1 < 0.5 * r0 and p1 < 0.6 * p0 and e1 < 0.6 * e0, (parts[0], parts[-1])


def test_disjoint_training_keeps_the_prior_loss_off_the_encoder():
    model = get_model("shrvqvae", TINY)
    x, y = torch.rand(2, 3, 1, 16, 16), torch.rand(2, 2, 1, 16, 16)
    out = model(x, T_IN, T_OUT, target=y)
    grads = torch.autograd.grad(out["loss"], list(model.encoder.parameters()))
    out2 = model(x, T_IN, T_OUT, target=y)
    rest = out2["loss"] - out2["prior"]  # the prior term enters as a detached copy here
    grads2 = torch.autograd.grad(rest, list(model.encoder.parameters()))
    for g1, g2 in zip(grads, grads2, strict=True):
        torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"image_size": 18},
            r"image_size 18 is not a multiple of the encoder stride 4 \(2 \*\* len",
        ),
        ({"vq_betas": (0.25, 0.25)}, "vq_betas has 2 values; vq_layers 3 needs 4"),
        ({"vq_codebook_size": 1}, "vq_layers 3 and vq_codebook_size 1 must be >= 1 and >= 2"),
        ({"vq_codebook_size": 128}, r"vq_codebook_size 128 \*\* vq_layers 3 = 2097152 codewords"),
        (
            {"shrvqvae_training": "both"},
            "unknown shrvqvae_training 'both'; valid names: disjoint, joint",
        ),
        ({"lagrangian": True}, "shrvqvae has no Lagrangian mode"),
    ],
)
def test_a_config_that_does_not_fit_is_refused_in_one_line(change, message):
    with pytest.raises(ValueError, match=message):
        get_model("shrvqvae", dataclasses.replace(TINY, **change))


def test_frames_off_the_latent_grid_are_refused():
    model = get_model("shrvqvae", TINY)
    with pytest.raises(ValueError, match="multiple"):
        model(torch.rand(2, 3, 1, 18, 18), T_IN, T_OUT)


def test_shipped_configs_build_it_and_the_lagrangian_ones_keep_it_eulerian():
    for name in ("small", "hko7", "mnist", "small_lagrangian", "hko7_lagrangian"):
        model = get_model("shrvqvae", load_config(name))
        assert model.ensemble
    small = get_model("shrvqvae", load_config("small"))
    assert small.stride == 8 and small.quantizer.size == 8 and small.quantizer.layers == 3


def test_trains_reports_unused_codewords_and_scores_its_own_members(tmp_path):
    import json

    import xarray as xr

    from nowcast.evaluate import EvaluateOptions, evaluate_run
    from nowcast.training import TrainOptions, train
    from tests.nowcast.test_train import _TINY_CONFIG, FRACTIONS, _write_tiny_store

    store = _write_tiny_store(tmp_path / "tiny.zarr")
    config = tmp_path / "tiny.yaml"
    extra = (
        "  shrvqvae:\n    vq_channels: [4, 4]\n    vq_latent_dim: 2\n    vq_codebook_size: 4\n"
        "    pixelcnn_channels: 8\n    pixelcnn_blocks: 1\n    pixelcnn_heads: 2\n"
        "    pixelcnn_context: 2\n    ensemble_members: 2\n"
    )
    config.write_text(_TINY_CONFIG.replace("train:\n", extra + "train:\n", 1))
    options = TrainOptions(progress=False, split_fractions=FRACTIONS, seed=7, epochs=2)
    result = train("shrvqvae", config, store, tmp_path / "run", options=options)
    doc = json.loads((tmp_path / "run" / "metrics.json").read_text())
    dead = [row["dead_codes"].split() for row in doc["epochs"]]
    assert len(dead) == 2 == result.epochs_completed
    assert [d.split("/")[1] for d in dead[0]] == ["4", "16", "64"]  # unused / codewords
    ev = EvaluateOptions(
        split="test", split_fractions=FRACTIONS, max_samples=2, members=3, progress=False
    )
    out = evaluate_run(tmp_path / "run", store, ev, out_dir=tmp_path / "ev")
    res = xr.open_dataset(tmp_path / "ev" / "results.nc").load()
    assert int(res["n_members"].sel(predictor="shrvqvae")) == 3  # its own samples
    assert res.attrs["sampled_members"] == "shrvqvae"
    assert float(res["CRPS"].mean()) > 0 and out.results.attrs["n_samples"] == 2
    md = (tmp_path / "ev" / "results.md").read_text()
    assert "those of the ensemble mean (the members' mean); shrvqvae sampled its own" in md


def test_forecast_members_are_its_samples_and_the_mean_is_their_mean(tmp_path):
    from nowcast.ensemble_forecast import PROBABILITY_NAME, make_ensemble_forecast
    from nowcast.forecast import make_forecast, run_predictor
    from pipeline.units import dbz_to_normalized
    from tests.nowcast.test_forecast import ISSUE, _moving_blob_store

    cfg = load_config("small")
    model = get_model("shrvqvae", cfg)
    with torch.no_grad():  # an untrained decoder clips to 0 everywhere: lift it to mid-scale
        model.decoder[-1].bias.fill_(0.4)
    (tmp_path / "run").mkdir()
    ckpt = {
        "format": 1,
        "model_name": "shrvqvae",
        "model_state": model.state_dict(),
        "config": dataclasses.asdict(cfg),
        "meta": {},
    }
    torch.save(ckpt, tmp_path / "run" / "best.pt")
    store, _ = _moving_blob_store(n_frames=cfg.in_frames, size=80)
    pred = run_predictor(tmp_path / "run")
    fc = make_ensemble_forecast(pred, store, ISSUE, [6, 12], members=3, seed=2, keep_members=True)
    assert fc.attrs["ensemble_method"] == "members of the ensemble predictor shrvqvae"
    members = dbz_to_normalized(fc["reflectivity_members"].values)  # (3, 2, 80, 80)
    assert members.shape == (3, 2, 80, 80) and not np.allclose(members[0], members[1])
    np.testing.assert_allclose(
        dbz_to_normalized(fc["reflectivity"].values), members.mean(axis=0), atol=1e-5
    )
    assert PROBABILITY_NAME in fc
    again = make_ensemble_forecast(
        pred, store, ISSUE, [6, 12], members=3, seed=2, keep_members=True
    )
    np.testing.assert_array_equal(again["reflectivity_members"], fc["reflectivity_members"])
    det = make_forecast(pred, store, ISSUE, [6, 12])  # no --members: the default 4 members' mean
    assert det["reflectivity"].shape == (2, 80, 80)


def test_position_by_position_features_give_the_whole_sequence_logits():
    prior = STPixelCNN(layers=2, size=3, channels=8, blocks=2, kernel=3, heads=2, context=2)
    paths = torch.stack([torch.randint(0, 3 ** (i + 1), (2, 5, 3, 3)) for i in range(2)], 2)
    full = prior(paths)  # (B, T, n, M, h, w)
    for t in (0, 1, 4):  # no previous frame, fewer than the context, a full context
        past, kv = prior.frame_context(paths[:, max(0, t - 2) : t])
        for pos in (0, 4, 8):
            feat = prior.position_features(paths[:, t : t + 1], past, kv, pos)
            r, c = divmod(pos, 3)
            here = paths[:, t : t + 1, :, r : r + 1, c : c + 1]
            for i in range(2):
                got = prior.layer_logits(feat, here, i)[:, 0, :, 0, 0]
                torch.testing.assert_close(got, full[:, t, i, :, r, c], rtol=0, atol=1e-5)
