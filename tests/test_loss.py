"""The CLIP loss on a double ellipsoid (Eqs. 7-9, Fig. 6; EuCLIP geometries) and the Fig. 7 simulation.

Every check compares against an independent computation: torch's cross-entropy for Eq. 7, the slow
per-alpha recomputation (shift, renormalise, full float64 softmax, scipy cdist) for the fast sweep,
numpy brute force for retrieval, numpy cosines for the blur simulation.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from clipgeom import loss as L
from clipgeom import sweep as S
from clipgeom.blur import blur_simulation, blur_summary, centre_vector
from clipgeom.grids import alpha_grid
from clipgeom.h5io import read_embeddings
from clipgeom.stages import loss as LS

SCALES = {"cosine": 100.0, "euclidean": 10.0, "sq_euclidean": 1.0}


def clip_like(n=300, d=32, seed=0, gap=1.0, noise=0.6):
    """Raw paired vectors with a modality gap: image = m_i + z + e, text = m_t + z + e'."""
    rng = np.random.default_rng(seed)
    mi = rng.normal(size=d) * gap
    mt = rng.normal(size=d) * gap
    z = rng.normal(size=(n, d))
    x = mi + z + noise * rng.normal(size=(n, d))
    y = mt + z + noise * rng.normal(size=(n, d))
    return x, y


def means_of(x, y):
    return {"image": np.asarray(x, np.float64).mean(0), "text": np.asarray(y, np.float64).mean(0)}


# ----------------------------------------------------------------------------- the equations
def test_shift_eq9_centres_at_alpha_one():
    x, _ = clip_like(50, 8)
    m = x.mean(0)
    np.testing.assert_allclose(L.shift_embeddings(x, m, 0.0), x)
    np.testing.assert_allclose(L.shift_embeddings(x, m, 1.0).mean(0), 0.0, atol=1e-12)
    np.testing.assert_allclose(L.shift_embeddings(x, m, -0.5), x + 0.5 * m)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_clip_loss_is_symmetric_cross_entropy(seed):
    import torch

    rng = np.random.default_rng(seed)
    s = rng.normal(size=(40, 40)) * 5 + np.eye(40) * rng.uniform(0, 10)
    t = torch.as_tensor(s)
    target = torch.arange(40)
    ref = 0.5 * (torch.nn.functional.cross_entropy(t, target) + torch.nn.functional.cross_entropy(t.T, target))
    assert L.clip_loss(s) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
def test_alignment_plus_uniformity_is_the_loss(seed):
    x, y = clip_like(60, 16, seed)
    for g in L.GEOMETRIES:
        s = L.logits(x, y, SCALES[g], g)
        a, u = L.alignment_uniformity(s)
        assert a == pytest.approx(np.mean(np.diag(s)), rel=1e-12)  # Eq. 8's alignment term, E_j[s_jj]
        assert -a + u == pytest.approx(L.clip_loss(s), rel=1e-12, abs=1e-12)


def test_logits_geometries_against_definitions():
    x, y = clip_like(7, 5)
    s = L.logits(x, y, 3.0, "cosine")
    i, k = 2, 5
    cos = x[i] @ y[k] / np.linalg.norm(x[i]) / np.linalg.norm(y[k])
    assert s[i, k] == pytest.approx(3.0 * cos)
    assert L.logits(x, y, 3.0, "euclidean")[i, k] == pytest.approx(-3.0 * np.linalg.norm(x[i] - y[k]))
    assert L.logits(x, y, 3.0, "sq_euclidean")[i, k] == pytest.approx(-3.0 * np.sum((x[i] - y[k]) ** 2))
    with pytest.raises(ValueError, match="geometry"):
        L.logits(x, y, 1.0, "hyperbolic")


# ----------------------------------------------------------------------------- fast sweep vs direct
@pytest.mark.parametrize("two_exp", ["auto", "flipped"])
@pytest.mark.parametrize("geometry", L.GEOMETRIES)
def test_fast_sweep_matches_direct(geometry, two_exp):
    """float32 sweep vs float64 recomputation; both column-sum modes (one exp pass with the frame and
    fallback; two exp passes with per-column frames) on every geometry."""
    x, y = clip_like(300, 32, seed=3)
    means = means_of(x, y)
    alphas = alpha_grid(-1, 1, 0.1)
    scale = SCALES[geometry]
    mode = "auto" if two_exp == "auto" else geometry == "cosine"
    fast = S.sweep_pair_terms(
        x.astype(np.float32),
        y.astype(np.float32),
        alphas,
        scale=scale,
        means=means,
        geometries=(geometry,),
        row_block=64,
        threads=2,
        two_exp=mode,
    )  # 64 does not divide 300
    for shift in L.SHIFTS:
        ref = L.direct_pair_terms(
            x.astype(np.float32),
            y.astype(np.float32),
            alphas,
            scale=scale,
            mean=means[shift],
            geometry=geometry,
            shift=shift,
        )
        got = fast[(geometry, shift)]
        mag = max(1.0, float(np.abs(ref.diag).max()), float(np.abs(ref.row_lse).max()))
        for name in ("diag", "row_lse", "col_lse"):  # per pair: float32 logits of magnitude `mag`
            np.testing.assert_allclose(
                getattr(got, name), getattr(ref, name), rtol=0, atol=1e-6 * mag, err_msg=f"{geometry}/{shift}/{name}"
            )
        np.testing.assert_array_equal(got.i2t, ref.i2t)
        np.testing.assert_array_equal(got.t2i, ref.t2i)
        for classify_at in L.CLASSIFY_AT:
            cf = L.curves_from_terms([got], classify_at=classify_at)
            cr = L.curves_from_terms([ref], classify_at=classify_at)
            for key in cr:
                np.testing.assert_allclose(cf[key], cr[key], rtol=1e-5, atol=1e-5, err_msg=f"{geometry}/{shift}/{key}")
        # the loss of Eq. 7 at every alpha, straight from the shifted vectors
        xf, yf = x.astype(np.float32), y.astype(np.float32)
        for a in (0, 5, 20):
            if shift == "image":
                xs, ys = L.shift_embeddings(xf, means[shift], alphas[a]), yf
            else:
                xs, ys = xf, L.shift_embeddings(yf, means[shift], alphas[a])
            assert got.loss[a].mean() == pytest.approx(L.clip_loss(L.logits(xs, ys, scale, geometry)), abs=1e-5)


def test_fast_sweep_float64_agrees_to_rounding():
    x, y = clip_like(157, 24, seed=4)
    means = means_of(x, y)
    alphas = alpha_grid(-1, 1, 0.25)
    fast = S.sweep_pair_terms(
        x, y, alphas, scale=50.0, means=means, geometries=L.GEOMETRIES, row_block=40, dtype="float64"
    )
    for (g, s), got in fast.items():
        ref = L.direct_pair_terms(x, y, alphas, scale=50.0, mean=means[s], geometry=g, shift=s)
        np.testing.assert_allclose(got.loss, ref.loss, rtol=0, atol=1e-9)
        np.testing.assert_allclose(got.uniformity, ref.uniformity, rtol=0, atol=1e-9)


@pytest.mark.parametrize("two_exp", [False, "auto"])
def test_wide_logit_range_stays_exact(two_exp):
    """Euclidean logits at a large scale spread far beyond float32's exponent range. One exp pass: the
    column sums that its frame would underflow are flagged and recomputed exactly; two exp passes (the
    default for Euclidean geometries) need no fallback. Both equal the float64 reference."""
    x, y = clip_like(200, 16, seed=5, noise=1.0)
    means = means_of(x, y)
    alphas = alpha_grid(-1, 1, 0.5)
    wide = {"sq_euclidean": 5.0, "euclidean": 60.0}
    for t2i, g in ((True, "sq_euclidean"), (False, "sq_euclidean"), (True, "euclidean")):
        fast = S.sweep_pair_terms(
            x, y, alphas, scale=wide[g], means=means, geometries=(g,), row_block=48, text_to_image=t2i, two_exp=two_exp
        )
        for (g, s), got in fast.items():
            if two_exp is False:
                assert got.info["fallback_columns"] > 0
            else:
                assert got.info["two_exp"] and got.info["fallback_columns"] == 0
            ref = L.direct_pair_terms(x, y, alphas, scale=wide[g], mean=means[s], geometry=g, shift=s)
            assert np.isfinite(got.col_lse).all()
            mag = float(np.abs(ref.diag).max())
            np.testing.assert_allclose(got.col_lse, ref.col_lse, rtol=0, atol=1e-6 * mag)
            np.testing.assert_allclose(got.row_lse, ref.row_lse, rtol=0, atol=1e-6 * mag)


def test_text_to_image_optional():
    x, y = clip_like(120, 16, seed=6)
    means = means_of(x, y)
    alphas = alpha_grid(-0.5, 0.5, 0.5)
    on = S.sweep_pair_terms(x, y, alphas, scale=100.0, means=means, geometries=L.GEOMETRIES)
    off = S.sweep_pair_terms(x, y, alphas, scale=100.0, means=means, geometries=L.GEOMETRIES, text_to_image=False)
    for k in on:
        np.testing.assert_allclose(off[k].loss, on[k].loss, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(off[k].i2t, on[k].i2t)
        assert np.isnan(L.curves_from_terms([off[k]])["accuracy_t2i"]).all()
        assert np.isfinite(L.curves_from_terms([on[k]])["accuracy_t2i"]).all()


# ----------------------------------------------------------------------------- subsets, batches, grid
@pytest.mark.parametrize("classify_at", L.CLASSIFY_AT)
@pytest.mark.parametrize("correct_by", L.CORRECT_BY)
def test_subsets_partition_and_decompose(classify_at, correct_by):
    x, y = clip_like(200, 16, seed=7, noise=1.2)
    means = means_of(x, y)
    alphas = alpha_grid(-1, 1, 0.2)
    terms = S.sweep_pair_terms(x, y, alphas, scale=100.0, means=means, geometries=("cosine",))
    c = L.curves_from_terms([terms[("cosine", "image")]], correct_by, classify_at)
    assert np.all(c["n_correct"] + c["n_misclassified"] == c["n_pairs"])
    assert np.all((c["n_correct"] > 0) & (c["n_misclassified"] > 0))
    for q in L.CURVE_KEYS:
        recombined = (c[f"{q}_correct"] * c["n_correct"] + c[f"{q}_misclassified"] * c["n_misclassified"]) / c[
            "n_pairs"
        ]
        np.testing.assert_allclose(recombined, c[f"{q}_all"], rtol=1e-12, atol=1e-12)
    for s in L.SUBSETS:
        np.testing.assert_allclose(
            c[f"alignment_loss_{s}"] + c[f"uniformity_{s}"], c[f"loss_{s}"], rtol=1e-12, atol=1e-12
        )
    if classify_at == "zero":
        assert len(set(c["n_correct"].tolist())) == 1  # the same pairs at every alpha
    # correct pairs: brute force on the direct logits at alpha = 0
    s0 = L.logits(x, y, 100.0, "cosine")
    i2t = np.argmax(s0, 1) == np.arange(len(x))
    t2i = np.argmax(s0, 0) == np.arange(len(x))
    ok = {"image_to_text": i2t, "text_to_image": t2i, "both": i2t & t2i}[correct_by]
    i0 = int(np.flatnonzero(alphas == 0)[0])
    assert c["n_correct"][i0] == ok.sum()
    per_pair = -np.diag(s0) + 0.5 * (L._lse(s0, 1) + L._lse(s0, 0))
    assert c["loss_correct"][i0] == pytest.approx(per_pair[ok].mean(), abs=1e-5)
    assert c["accuracy_i2t"][i0] == pytest.approx(i2t.mean())
    assert c["accuracy_t2i"][i0] == pytest.approx(t2i.mean())


def test_alpha_grid():
    g = alpha_grid(-1, 1, 0.1)
    assert len(g) == 21 and g[0] == -1 and g[-1] == 1 and 0.0 in g
    np.testing.assert_allclose(np.diff(g), 0.1, atol=1e-9)
    g2 = alpha_grid(-0.25, 1, 0.3)  # the step misses 0: it is added
    assert 0.0 in g2 and np.all(np.diff(g2) > 0)
    with pytest.raises(ValueError):
        alpha_grid(0, 1, 0)


def test_make_batches():
    b = LS.make_batches(103, None, None, 0)
    assert len(b) == 1 and np.array_equal(b[0], np.arange(103))
    b = LS.make_batches(103, 20, None, 0)
    assert len(b) == 5 and all(len(x) == 20 for x in b)
    assert len(np.unique(np.concatenate(b))) == 100  # disjoint
    assert all(np.array_equal(u, v) for u, v in zip(b, LS.make_batches(103, 20, None, 0), strict=False))  # seeded
    assert not all(np.array_equal(u, v) for u, v in zip(b, LS.make_batches(103, 20, None, 1), strict=False))
    assert len(LS.make_batches(103, 20, 12, 0)) == 12


def test_batched_sweep_pools_per_batch_direct_losses():
    x, y = clip_like(150, 16, seed=8)
    means = means_of(x, y)
    alphas = alpha_grid(-1, 1, 0.5)
    batches = LS.make_batches(150, 40, None, 3)
    curves, info = LS.alpha_sweep(
        x, y, alphas, scale=100.0, means=means, geometries=("cosine", "euclidean"), batches=batches
    )
    assert info["n_batches"] == 3
    for g in ("cosine", "euclidean"):
        for s in L.SHIFTS:
            scale = 100.0
            per_batch = []
            for idx in batches:
                ref = L.direct_pair_terms(x[idx], y[idx], alphas, scale=scale, mean=means[s], geometry=g, shift=s)
                per_batch.append(ref.loss.mean(1))
            # equal batch sizes: the pooled mean is the mean of the batch losses
            np.testing.assert_allclose(curves[(g, s)]["loss_all"], np.mean(per_batch, 0), rtol=1e-5, atol=1e-5)
            assert np.all(curves[(g, s)]["n_pairs"] == 120)


def test_select_pairs():
    from clipgeom.h5io import Embeddings

    idx = np.array([2, 0, 2, 1, 0, -1, 1])  # caption rows -> image rows (-1: no image)
    emb = Embeddings(
        image=np.zeros((4, 3), np.float32),
        text=np.zeros((7, 3), np.float32),
        image_id=np.arange(4),
        image_file=np.array([""] * 4, dtype=object),
        text_id=np.arange(7),
        text_image_index=idx,
        caption=np.array([f"c{i}" for i in range(7)], dtype=object),
    )
    img, txt = LS.select_pairs(emb, "first")
    assert img.tolist() == [0, 1, 2] and txt.tolist() == [1, 3, 0]  # image 3 has no caption
    for seed in range(5):
        img, txt = LS.select_pairs(emb, "random", seed)
        assert img.tolist() == [0, 1, 2] and np.array_equal(idx[txt], img)
    picks = {tuple(LS.select_pairs(emb, "random", s)[1]) for s in range(20)}
    assert len(picks) > 1
    assert np.array_equal(LS.select_pairs(emb, "random", 3)[1], LS.select_pairs(emb, "random", 3)[1])


# ----------------------------------------------------------------------------- the 500 real CLIP pairs
def stage_defaults(repo_root, stage):
    import yaml

    sch = yaml.safe_load((repo_root / "config" / "schema" / "stages" / f"{stage}.schema.yaml").read_text())
    return {k: v["default"] for k, v in sch["properties"].items()}


def test_stage_schemas_are_valid(repo_root):
    import yaml
    from jsonschema import Draft202012Validator

    for stage in ("alpha_sweep", "blur_simulation"):
        sch = yaml.safe_load((repo_root / "config" / "schema" / "stages" / f"{stage}.schema.yaml").read_text())
        Draft202012Validator.check_schema(sch)
        for name, prop in sch["properties"].items():
            assert {"default", "description"} <= set(prop), f"{stage}.{name}"
            assert "type" in prop, f"{stage}.{name}"
        Draft202012Validator(sch).validate(stage_defaults(repo_root, stage))
    sch = yaml.safe_load((repo_root / "config/schema/stages/alpha_sweep.schema.yaml").read_text())
    for bad in ({"geometries": ["hyperbolic"]}, {"alpha_step": 0}, {"caption_policy": "all"}, {"batch_size": 1}):
        assert list(Draft202012Validator(sch).iter_errors(dict(stage_defaults(repo_root, "alpha_sweep"), **bad)))
    assert sch["properties"]["alpha_step"]["default"] == 0.1 and sch["properties"]["logit_scale"]["default"] is None


def test_real_clip_pairs(clip500_h5, repo_root, capsys):
    """The 500 real CLIP ViT-B/16 COCO pairs: both shifts, cross-checked against brute force."""
    p = stage_defaults(repo_root, "alpha_sweep")
    res = LS.compute_alpha_sweep(clip500_h5, p, threads=2)
    emb = read_embeddings(clip500_h5)
    x, y = emb.image.astype(np.float64), emb.text.astype(np.float64)  # rows are pairs, first captions
    # independent: Eq. 7 at alpha = 0 with numpy/scipy, and brute-force recall@1
    s0 = 100.0 * (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (y / np.linalg.norm(y, axis=1, keepdims=True)).T
    loss0 = L.clip_loss(s0)
    recall_i2t = float(np.mean(np.argmax(s0, axis=1) == np.arange(len(x))))
    recall_t2i = float(np.mean(np.argmax(s0, axis=0) == np.arange(len(x))))
    assert recall_i2t == pytest.approx(0.552)  # the data README's figure
    assert recall_t2i == pytest.approx(0.506)
    a = res.alphas
    i0 = int(np.flatnonzero(a == 0)[0])
    for s in L.SHIFTS:
        c = res.curves[("cosine", s)]
        assert np.isfinite(c["loss_all"]).all() and np.isfinite(c["loss_correct"]).all()
        assert c["loss_all"][i0] == pytest.approx(loss0, abs=1e-5)
        assert res.summary[f"{s}_shift"]["loss_at_zero"] == pytest.approx(loss0, abs=1e-5)
        assert c["accuracy_i2t"][i0] == pytest.approx(recall_i2t, abs=1e-12)
        assert c["accuracy_t2i"][i0] == pytest.approx(recall_t2i, abs=1e-12)
        # the shift moves the loss: alpha = +-1 differ from alpha = 0
        assert abs(c["loss_all"][0] - c["loss_all"][i0]) > 1e-3 and abs(c["loss_all"][-1] - c["loss_all"][i0]) > 1e-3
        # a shifted alpha against the direct recomputation
        k = int(np.flatnonzero(np.isclose(a, 0.5))[0])
        m = emb.image.astype(np.float64).mean(0) if s == "image" else emb.text.astype(np.float64).mean(0)
        xs, ys = (x - 0.5 * m, y) if s == "image" else (x, y - 0.5 * m)
        assert c["loss_all"][k] == pytest.approx(L.clip_loss(L.logits(xs, ys, 100.0)), abs=1e-5)
        summ = res.summary[f"{s}_shift"]["argmin_alpha"]
        assert summ["all"] == a[np.nanargmin(c["loss_all"])]
        # the paper (Fig. 6) and the data's authors (5k pairs): the total is lowest near the model's own gap
        assert abs(summ["all"]) <= 0.3
        # ... while correctly classified pairs prefer a larger alpha than misclassified ones
        assert summ["correct"] > summ["misclassified"]
        with capsys.disabled():
            print(
                f"\n[clip500] {s} shift: argmin alpha all/correct/misclassified = "
                f"{summ['all']}/{summ['correct']}/{summ['misclassified']}, loss at 0 = {c['loss_all'][i0]:.5f}"
            )
    for g in ("euclidean", "sq_euclidean"):
        for s in L.SHIFTS:
            assert set(res.summary[g][f"{s}_shift"]["argmin_alpha"]) == set(L.SUBSETS)
            assert np.isfinite(res.curves[(g, s)]["loss_all"]).all()
        s_e = L.logits(x, y, 100.0, g)
        assert res.summary[g]["image_shift"]["loss_at_zero"] == pytest.approx(L.clip_loss(s_e), abs=1e-4)


def test_logit_scale_from_file_and_override(write_h5, repo_root):
    x, y = clip_like(80, 16, seed=9)
    path = write_h5(x, y, logit_scale=20.0)
    p = dict(
        stage_defaults(repo_root, "alpha_sweep"), geometries=["cosine"], alpha_min=-0.5, alpha_max=0.5, alpha_step=0.5
    )
    res = LS.compute_alpha_sweep(path, p)
    assert res.scale == 20.0
    xf, yf = x.astype(np.float32), y.astype(np.float32)
    assert res.summary["image_shift"]["loss_at_zero"] == pytest.approx(L.clip_loss(L.logits(xf, yf, 20.0)), abs=1e-5)
    res = LS.compute_alpha_sweep(path, dict(p, logit_scale=7.0))
    assert res.scale == 7.0
    assert res.summary["image_shift"]["loss_at_zero"] == pytest.approx(L.clip_loss(L.logits(xf, yf, 7.0)), abs=1e-5)


def test_means_are_over_the_whole_raw_set(tmp_path, repo_root):
    """Two captions per image: the batch holds first captions, but m_t is the mean of every caption."""
    from clipgeom.h5io import Embeddings, write_embeddings

    x, y1 = clip_like(60, 12, seed=10)
    _, y2 = clip_like(60, 12, seed=11)
    text = np.concatenate([y2, y1]).astype(np.float32)  # caption rows 0..59 are the first ones
    idx = np.concatenate([np.arange(60), np.arange(60)])
    emb = Embeddings(
        image=x.astype(np.float32),
        text=text,
        image_id=np.arange(60),
        image_file=np.array([""] * 60, dtype=object),
        text_id=np.arange(120),
        text_image_index=idx,
        caption=np.array([f"c{i}" for i in range(120)], dtype=object),
        attrs={"logit_scale": 50.0},
    )
    path = tmp_path / "e.h5"
    write_embeddings(path, emb)
    p = dict(stage_defaults(repo_root, "alpha_sweep"), geometries=["cosine"], alpha_step=0.5)
    res = LS.compute_alpha_sweep(path, p)
    xf, yf = x.astype(np.float32), y2.astype(np.float32)
    m_t = text.astype(np.float64).mean(0)
    assert not np.allclose(m_t, yf.astype(np.float64).mean(0))
    k = int(np.flatnonzero(res.alphas == 1.0)[0])
    want = L.clip_loss(L.logits(xf, L.shift_embeddings(yf, m_t, 1.0), 50.0))
    assert res.curves[("cosine", "text")]["loss_all"][k] == pytest.approx(want, abs=1e-5)


# ----------------------------------------------------------------------------- scripts
def run_script(repo_root, name, inputs, outputs, params, threads=2):
    cmd = [
        sys.executable,
        str(repo_root / "workflow" / "scripts" / f"{name}.py"),
        "--params",
        json.dumps(params),
        "--threads",
        str(threads),
    ]
    if inputs:
        cmd += ["--input"] + [f"{k}={v}" for k, v in inputs.items()]
    cmd += ["--output"] + [f"{k}={v}" for k, v in outputs.items()]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_alpha_sweep_script(clip500_h5, repo_root, tmp_path):
    import csv

    p = dict(stage_defaults(repo_root, "alpha_sweep"), alpha_min=-1.0, alpha_max=1.0, alpha_step=0.5)
    names = [
        "metrics.json",
        "curves.csv",
        "loss_curves.png",
        "loss_curves.pdf",
        "geometry_curves.png",
        "geometry_curves.pdf",
    ]
    keys = ["metrics", "curves", "loss_png", "loss_pdf", "geometry_png", "geometry_pdf"]
    outs = {k: tmp_path / n for k, n in zip(keys, names, strict=False)}
    run_script(repo_root, "alpha_sweep", {"embeddings": clip500_h5}, outs, {"p": p, "demo": False})
    m = json.loads(outs["metrics"].read_text())
    assert m["stage"] == "alpha_sweep"
    summ = m["summary"]
    for s in ("image_shift", "text_shift"):
        assert set(summ[s]["argmin_alpha"]) == {"all", "correct", "misclassified"}
        assert summ[s]["loss_at_zero"] > 0
        for g in ("euclidean", "sq_euclidean"):
            assert summ[g][s]["argmin_alpha"]["all"] in [-1.0, -0.5, 0.0, 0.5, 1.0]
    rows = list(csv.DictReader(outs["curves"].open()))
    assert len(rows) == 3 * 2 * 5
    assert {r["geometry"] for r in rows} == set(L.GEOMETRIES)
    cos0 = [r for r in rows if r["geometry"] == "cosine" and r["shift"] == "image" and float(r["alpha"]) == 0]
    assert float(cos0[0]["loss_all"]) == pytest.approx(summ["image_shift"]["loss_at_zero"])
    assert float(cos0[0]["accuracy_i2t"]) == pytest.approx(0.552)
    for k in keys[2:]:
        assert outs[k].stat().st_size > 1000


# ----------------------------------------------------------------------------- Fig. 7
def test_blur_simulation_reproduces_fig7():
    res = blur_simulation(n=1000, dim=512, centre=(10, 5, 5), seed=0)
    for st in res.values():
        v = st.vectors
        m = v.mean(0)  # independent recomputation of both histograms
        cm = v @ m / (np.linalg.norm(v, axis=1) * np.linalg.norm(m))
        far = int(np.argmin(cm))
        cf = np.delete(v @ v[far] / (np.linalg.norm(v, axis=1) * np.linalg.norm(v[far])), far)
        np.testing.assert_allclose(st.cos_mean, cm, rtol=1e-12)
        np.testing.assert_allclose(st.cos_far, cf, rtol=1e-12)
        assert st.far_index == far and len(st.cos_far) == 999
    np.testing.assert_allclose(
        res["offset"].vectors - res["origin"].vectors,
        np.broadcast_to(centre_vector((10, 5, 5), 512), (1000, 512)),
        atol=1e-12,
    )
    s = blur_summary(res)
    off, org = s["offset"], s["origin"]
    # off-centre: every vector is much closer to the mean than to v_far
    assert off["cos_mean"]["mean"] - off["cos_far"]["mean"] > 5 * max(off["cos_mean"]["std"], off["cos_far"]["std"])
    assert off["cos_mean"]["mean"] > 2 * off["cos_far"]["mean"]
    # at the origin the two histograms are alike: their means within one spread of each other
    assert abs(org["cos_mean"]["mean"] - org["cos_far"]["mean"]) < max(org["cos_mean"]["std"], org["cos_far"]["std"])
    assert abs(org["cos_mean"]["std"] - org["cos_far"]["std"]) < 0.5 * org["cos_far"]["std"]
    assert off["mean_gap"] > 5 * abs(org["mean_gap"])


def test_blur_simulation_settings():
    a = blur_simulation(n=50, dim=8, centre=[3.0], seed=1)
    b = blur_simulation(n=50, dim=8, centre=[3.0], seed=1)
    np.testing.assert_array_equal(a["offset"].cos_mean, b["offset"].cos_mean)
    assert a["offset"].vectors.shape == (50, 8)
    assert np.allclose(a["offset"].centre, [3, 0, 0, 0, 0, 0, 0, 0])
    with pytest.raises(ValueError):
        blur_simulation(n=10, dim=2, centre=[1, 2, 3])


def test_blur_simulation_script(repo_root, tmp_path):
    import csv

    p = stage_defaults(repo_root, "blur_simulation")
    outs = {
        k: tmp_path / n
        for k, n in (
            ("metrics", "metrics.json"),
            ("values", "values.csv"),
            ("hist_png", "blur_histograms.png"),
            ("hist_pdf", "blur_histograms.pdf"),
        )
    }
    run_script(repo_root, "blur_simulation", {}, outs, {"p": p}, threads=1)
    m = json.loads(outs["metrics"].read_text())
    res = blur_summary(blur_simulation(n=p["n"], dim=p["dim"], centre=p["centre"], seed=p["seed"]))
    assert m["summary"]["offset"]["cos_mean"]["mean"] == pytest.approx(res["offset"]["cos_mean"]["mean"])
    rows = list(csv.DictReader(outs["values"].open()))
    assert len(rows) == 2 * (p["n"] + p["n"] - 1)
    assert outs["hist_png"].stat().st_size > 1000
