"""Conformity (Eqs. 9-11), KL matching, cross-set conformity and vSLERP (Eq. 12).

Every check compares against an independent computation: brute-force pairwise cosines, explicitly
shifted copies, numpy/scipy histograms and fits, or geometric properties of SLERP.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from clipgeom import conformity as cf
from clipgeom import vslerp as vs
from clipgeom.config import validate_config
from clipgeom.grids import alpha_grid
from clipgeom.h5io import iter_embedding_chunks
from clipgeom.kl import sample_histogram_kl, shared_bins

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# independent reference computations
# ---------------------------------------------------------------------------
def brute_conformity(x: np.ndarray) -> np.ndarray:
    """Eq. 10 by definition: mean over k != j of cos(v_j, v_k), from the full cosine matrix."""
    x = np.asarray(x, dtype=np.float64)
    norms = np.linalg.norm(x, axis=1)
    cos = (x @ x.T) / np.outer(norms, norms)
    n = len(x)
    off = ~np.eye(n, dtype=bool)
    return np.array([cos[j][off[j]].mean() for j in range(n)])


def brute_cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean cosine of each row of a to every row of b, pair by pair."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    out = np.empty(len(a))
    for j, v in enumerate(a):
        out[j] = np.mean([v @ w / (np.linalg.norm(v) * np.linalg.norm(w)) for w in b])
    return out


def clip_like(n: int, d: int, seed: int, offset: float = 2.0) -> np.ndarray:
    """Raw, non-normalised vectors off the origin with an anisotropic spread (like a CLIP modality)."""
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=d)
    mean *= offset / np.linalg.norm(mean) * np.sqrt(d) / 4
    scale = rng.gamma(1.0, 1.0, size=d)
    return (mean + rng.normal(size=(n, d)) * scale).astype(np.float32)


def default_stages() -> dict:
    """Every stage block with the schema defaults filled in (also checks the stage schemas)."""
    config = {"datasets": {"x": {"kind": "demo"}}, "models": {"m": {"arch": "ViT-B-32"}}}
    validate_config(config, REPO / "config" / "schema")
    return config["stages"]


# ---------------------------------------------------------------------------
# Eq. 10
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,d,seed", [(2, 3, 0), (3, 16, 1), (57, 8, 2), (1000, 64, 3), (3000, 32, 4)])
def test_exact_conformity_equals_brute_force(n, d, seed):
    x = clip_like(n, d, seed)
    expected = brute_conformity(x)
    got = cf.conformity(x)
    assert got.shape == (n,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    # block-wise processing gives the same values
    np.testing.assert_allclose(cf.conformity(x, chunk_rows=7), expected, rtol=0, atol=1e-9)


def test_conformity_independent_of_row_scale():
    x = clip_like(200, 24, 5).astype(np.float64)
    scales = np.random.default_rng(0).uniform(0.1, 10, size=(200, 1))
    np.testing.assert_allclose(cf.conformity(x * scales), brute_conformity(x), atol=1e-9)


def test_streamed_conformity_from_h5(write_h5):
    img = clip_like(1203, 40, 6)
    txt = clip_like(1203, 40, 7)
    path = write_h5(img, txt)
    src = lambda: iter_embedding_chunks(path, "text", 100)  # noqa: E731
    conf, cos_m, sums = cf.conformity_and_cosine(src)
    np.testing.assert_allclose(conf, brute_conformity(txt), atol=1e-9)
    assert sums.n == 1203
    m = txt.astype(np.float64).mean(axis=0)
    expected_cos = np.array([v @ m / (np.linalg.norm(v) * np.linalg.norm(m)) for v in txt.astype(np.float64)])
    np.testing.assert_allclose(cos_m, expected_cos, atol=1e-9)


def test_zero_row_is_named():
    x = clip_like(10, 4, 8)
    x[6] = 0
    with pytest.raises(ValueError, match="row 6"):
        cf.conformity(x, chunk_rows=4)


def test_conformity_needs_two_rows():
    with pytest.raises(ValueError, match="at least 2"):
        cf.conformity(np.ones((1, 4)))


def test_cross_set_conformity_equals_brute_force():
    a = clip_like(150, 20, 9)
    b = clip_like(420, 20, 10, offset=3.0)
    expected = brute_cross(a, b)
    np.testing.assert_allclose(cf.cross_conformity(a, b), expected, atol=1e-9)
    np.testing.assert_allclose(
        cf.conformity_against(a, cf.set_sums(b, chunk_rows=33), chunk_rows=11), expected, atol=1e-9
    )


def test_cross_conformity_of_a_member_includes_itself():
    # C_B of B's own rows counts the self term (cos = 1) once among N_B: (N_B - 1)/N_B * C + 1/N_B
    b = clip_like(300, 12, 11)
    n = len(b)
    np.testing.assert_allclose(cf.cross_conformity(b, b), (n - 1) / n * brute_conformity(b) + 1 / n, atol=1e-9)


# ---------------------------------------------------------------------------
# Eq. 11
# ---------------------------------------------------------------------------
def test_fit_matches_numpy_polyfit_and_corrcoef():
    x = clip_like(800, 30, 12)
    conf = brute_conformity(x)
    m = x.astype(np.float64).mean(axis=0)
    cos_m = np.array([v @ m / (np.linalg.norm(v) * np.linalg.norm(m)) for v in x.astype(np.float64)])
    np.testing.assert_allclose(cf.cosine_to(x, m), cos_m, atol=1e-12)
    fit = cf.fit_estimated_conformity(conf, cos_m)
    a, b = np.polyfit(cos_m, conf, 1)
    assert fit.a == pytest.approx(a, rel=1e-9)
    assert fit.b == pytest.approx(b, abs=1e-9)
    assert fit.pearson == pytest.approx(np.corrcoef(conf, cos_m)[0, 1], abs=1e-12)
    np.testing.assert_allclose(fit.predict(cos_m), a * cos_m + b, atol=1e-9)


def test_estimated_conformity_on_real_clip_pairs(clip500):
    for mod in ("image", "text"):
        x = getattr(clip500, mod)
        conf = brute_conformity(x)
        c, cos_m, _ = cf.conformity_and_cosine(x)
        np.testing.assert_allclose(c, conf, atol=1e-9)
        fit = cf.fit_estimated_conformity(c, cos_m)
        assert fit.pearson > 0.999, (mod, fit)
        est = fit.predict(cos_m)
        assert stats.pearsonr(conf, est)[0] > 0.999
        assert fit.a > 0


# ---------------------------------------------------------------------------
# Eq. 9 shift and KL
# ---------------------------------------------------------------------------
def test_shifted_conformity_equals_explicit_shift():
    x = clip_like(400, 16, 13)
    m = x.astype(np.float64).mean(axis=0)
    alphas = [-1.0, -0.3, 0.0, 0.5, 1.0]
    got = cf.shifted_conformity(x, alphas, m, chunk_rows=64)
    assert got.shape == (len(alphas), len(x))
    for row, alpha in zip(got, alphas, strict=False):
        shifted = x.astype(np.float64) - alpha * m
        np.testing.assert_allclose(row, brute_conformity(shifted), atol=1e-9)
    # alpha = 0 reproduces the unshifted conformity; the default m is the raw mean
    np.testing.assert_allclose(got[2], cf.conformity(x), atol=1e-12)
    np.testing.assert_allclose(
        cf.shifted_conformity(x, [0.7])[0], brute_conformity(x.astype(np.float64) - 0.7 * m), atol=1e-9
    )


def test_kl_of_distribution_with_itself_is_zero():
    x = np.random.default_rng(14).normal(size=3000)
    assert sample_histogram_kl(x, x, bins=40, pseudocount=0.5) == 0.0
    y = np.random.default_rng(15).normal(0.5, 1.3, size=2000)
    assert sample_histogram_kl(x, y, bins=40, pseudocount=0.5) > 0.05


def test_kl_matches_scipy_entropy():
    rng = np.random.default_rng(16)
    p, q = rng.normal(size=1500), rng.normal(0.3, 0.8, size=900)
    edges = np.linspace(min(p.min(), q.min()), max(p.max(), q.max()), 31)
    hp = np.histogram(p, edges)[0] + 0.5
    hq = np.histogram(q, edges)[0] + 0.5
    expected = stats.entropy(hp / hp.sum(), hq / hq.sum())
    assert sample_histogram_kl(p, q, bins=30, pseudocount=0.5) == pytest.approx(expected, rel=1e-12)
    np.testing.assert_allclose(shared_bins(p, q, bins=30), edges)


def test_alpha_grid():
    g = alpha_grid(-1, 1, 0.1)
    np.testing.assert_allclose(g, np.linspace(-1, 1, 21), atol=1e-12)
    assert 0.0 in g and not np.signbit(g[10])
    with pytest.raises(ValueError):
        alpha_grid(0, 1, 0)


def test_kl_curve_on_real_clip_pairs(clip500):
    m = clip500.image.astype(np.float64).mean(axis=0)
    alphas = alpha_grid(-1, 1, 0.1)
    img = cf.shifted_conformity(clip500.image, alphas, m)
    txt = cf.conformity(clip500.text)
    kl = cf.kl_curve(img, txt, bins=50, pseudocount=0.5)
    assert kl.shape == (21,) and np.all(np.isfinite(kl)) and np.all(kl >= 0)
    i0 = int(np.flatnonzero(alphas == 0.0)[0])
    np.testing.assert_allclose(img[i0], brute_conformity(clip500.image), atol=1e-9)
    # the explicitly shifted set at the extremes agrees too
    np.testing.assert_allclose(img[-1], brute_conformity(clip500.image.astype(np.float64) - m), atol=1e-9)


# ---------------------------------------------------------------------------
# Eq. 12
# ---------------------------------------------------------------------------
def _angle(u, v):
    return np.arccos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1, 1))


def test_slerp_geometry():
    rng = np.random.default_rng(17)
    p, q = rng.normal(size=32), rng.normal(size=32)
    p /= np.linalg.norm(p)
    q /= np.linalg.norm(q)
    t = np.linspace(0, 1, 11)
    path = vs.slerp(p, q, t)
    np.testing.assert_allclose(np.linalg.norm(path, axis=1), 1.0, atol=1e-12)  # stays on the sphere
    steps = [_angle(path[i], path[i + 1]) for i in range(10)]
    np.testing.assert_allclose(steps, _angle(p, q) / 10, atol=1e-10)  # constant angular speed
    # every point lies in the plane spanned by p and q
    basis = np.linalg.qr(np.stack([p, q], axis=1))[0]
    np.testing.assert_allclose(path - path @ basis @ basis.T, 0, atol=1e-12)
    np.testing.assert_array_equal(path[0], p)
    np.testing.assert_array_equal(path[-1], q)


def test_vslerp_alpha_zero_is_slerp_and_endpoints_are_inputs(clip500):
    v = clip500.image.astype(np.float64)
    m = v.mean(axis=0)
    t = vs.path_fractions(9)
    for j, k in [(0, 1), (5, 300), (42, 499)]:
        np.testing.assert_allclose(vs.vslerp(v[j], v[k], t, 0.0, m), vs.slerp(v[j], v[k], t), atol=0)
        for alpha in (-2.0, -1.0, 0.0, 0.5, 1.0, 2.0):
            path = vs.vslerp(v[j], v[k], t, alpha, m)
            np.testing.assert_allclose(path[0], v[j], atol=1e-12)
            np.testing.assert_allclose(path[-1], v[k], atol=1e-12)
            # Eq. 12 written out: sin((1-t)W)/sin W * a + sin(tW)/sin W * b + alpha*m, a, b the shifted inputs
            a, b = v[j] - alpha * m, v[k] - alpha * m
            w = _angle(a, b)
            expected = (np.sin((1 - t) * w)[:, None] * a + np.sin(t * w)[:, None] * b) / np.sin(w) + alpha * m
            np.testing.assert_allclose(path, expected, atol=1e-12)


def test_nearest_rows_against_argmax():
    rng = np.random.default_rng(18)
    bank, pts = rng.normal(size=(200, 10)), rng.normal(size=(7, 10))
    idx, cos = vs.nearest_rows(pts, bank, k=3)
    for i, p in enumerate(pts):
        sims = np.array([p @ b / (np.linalg.norm(p) * np.linalg.norm(b)) for b in bank])
        assert list(idx[i]) == list(np.argsort(-sims)[:3])
        np.testing.assert_allclose(cos[i], np.sort(sims)[::-1][:3], atol=1e-12)


def test_resolve_pairs():
    ids = np.array([10, 20, 30, 40])
    assert vs.resolve_pairs(ids, [[20, "40"]])[0] == [(1, 3)]
    with pytest.raises(KeyError, match="999"):
        vs.resolve_pairs(ids, [[20, 999]])
    rows, how = vs.resolve_pairs(ids, None, n_random=5, seed=3)
    assert how.startswith("random") and len(rows) == 5 and all(a != b for a, b in rows)
    assert rows == vs.resolve_pairs(ids, [], n_random=5, seed=3)[0]


# ---------------------------------------------------------------------------
# the stage scripts, end to end on an embeddings.h5
# ---------------------------------------------------------------------------
OUTPUTS = {
    "conformity": [
        "metrics.json",
        ("values", "conformity.csv"),
        ("scatter_png", "s.png"),
        ("scatter_pdf", "s.pdf"),
        ("images_png", "i.png"),
        ("images_pdf", "i.pdf"),
        ("captions_png", "c.png"),
        ("captions_pdf", "c.pdf"),
    ],
    "kl_matching": [
        "metrics.json",
        ("values", "kl.csv"),
        ("dist_png", "d.png"),
        ("dist_pdf", "d.pdf"),
        ("curve_png", "k.png"),
        ("curve_pdf", "k.pdf"),
    ],
    "conformity_compare": ["metrics.json", ("values", "v.csv"), ("compare_png", "c.png"), ("compare_pdf", "c.pdf")],
    "vslerp": [
        "metrics.json",
        ("values", "v.csv"),
        ("paths_png", "p.png"),
        ("paths_pdf", "p.pdf"),
        ("stats_png", "s.png"),
        ("stats_pdf", "s.pdf"),
    ],
}


def run_script(stage, inputs, params, out_dir, expect_ok=True):
    """Run workflow/scripts/<stage>.py by hand (its argparse mode), as a separate process."""
    out_dir = Path(out_dir)
    outs = {}
    for item in OUTPUTS[stage]:
        key, name = ("metrics", item) if isinstance(item, str) else item
        outs[key] = out_dir / name
    log = out_dir / f"{stage}.log"
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(REPO / "workflow" / "scripts" / f"{stage}.py"),
        "--input",
        *[f"{k}={v}" for k, v in inputs.items()],
        "--output",
        *[f"{k}={v}" for k, v in outs.items()],
        "--params",
        json.dumps(params),
        "--wildcards",
        "dataset=coco500",
        "model=vitb16",
        "--log",
        str(log),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MPLBACKEND": "Agg"}, cwd=out_dir)
    if expect_ok:
        assert res.returncode == 0, res.stderr[-4000:]
        for key, path in outs.items():
            assert path.is_file() and path.stat().st_size > 0, f"{stage}: {key} not written"
        return outs, log.read_text()
    assert res.returncode != 0
    return outs, res.stderr


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def stages():
    return default_stages()


def test_conformity_script_end_to_end(clip500, clip500_h5, stages, tmp_path):
    # images for a few rows only: the others must fall back to their file names, and the log says so
    from PIL import Image

    img_dir = tmp_path / "images"
    img_dir.mkdir()
    expected = {mod: brute_conformity(getattr(clip500, mod)) for mod in ("image", "text")}
    top = np.argsort(-expected["image"])[:2]
    for i in top:
        Image.new("RGB", (40, 30), (200, 30, 30)).save(img_dir / clip500.image_file[i])
    outs, log = run_script(
        "conformity",
        {"embeddings": clip500_h5},
        {"p": stages["conformity"], "demo": False, "images": str(img_dir)},
        tmp_path / "out",
    )
    metrics = json.loads(outs["metrics"].read_text())
    assert metrics["stage"] == "conformity"
    assert metrics["thumbnails"]["loaded"] == 2
    assert "showing the file name instead" in log
    rows = read_csv(outs["values"])
    assert len(rows) == 1000
    for mod in ("image", "text"):
        got = np.array([float(r["exact_conformity"]) for r in rows if r["modality"] == mod])
        np.testing.assert_allclose(got, expected[mod], atol=1e-9)
        est = np.array([float(r["estimated_conformity"]) for r in rows if r["modality"] == mod])
        s = metrics["summary"][mod]
        assert s["pearson"] > 0.999
        assert s["pearson"] == pytest.approx(np.corrcoef(got, est)[0, 1], abs=1e-9)
        assert s["mean"] == pytest.approx(expected[mod].mean(), abs=1e-9)
        assert s["std"] == pytest.approx(expected[mod].std(), abs=1e-9)
        most = metrics["modalities"][mod]["most_conforming"][0]
        assert most["conformity"] == pytest.approx(expected[mod].max(), abs=1e-9)


def test_conformity_script_without_images(clip500_h5, stages, tmp_path):
    outs, log = run_script(
        "conformity", {"embeddings": clip500_h5}, {"p": stages["conformity"], "demo": True, "images": None}, tmp_path
    )
    assert "no image source configured" in log
    assert json.loads(outs["metrics"].read_text())["demo"] is True


def test_kl_matching_script_end_to_end(clip500, clip500_h5, stages, tmp_path):
    p = stages["kl_matching"]
    outs, log = run_script("kl_matching", {"embeddings": clip500_h5}, {"p": p, "demo": False}, tmp_path)
    metrics = json.loads(outs["metrics"].read_text())
    rows = read_csv(outs["values"])
    alphas = np.array([float(r["alpha"]) for r in rows])
    np.testing.assert_allclose(alphas, np.linspace(p["alpha_min"], p["alpha_max"], 21), atol=1e-12)
    kl = np.array([float(r["kl_image_text"]) for r in rows])
    # independent: explicit shift, brute force conformity, numpy histogram + scipy entropy
    img0, txt = brute_conformity(clip500.image), brute_conformity(clip500.text)

    def kl_ref(a, b):
        edges = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), p["bins"] + 1)
        ha = np.histogram(a, edges)[0] + p["pseudocount"]
        hb = np.histogram(b, edges)[0] + p["pseudocount"]
        return stats.entropy(ha / ha.sum(), hb / hb.sum())

    assert metrics["summary"]["kl_at_zero"] == pytest.approx(kl_ref(img0, txt), rel=1e-6)
    m = clip500.image.astype(np.float64).mean(axis=0)
    for i in (0, 7, 20):
        shifted = brute_conformity(clip500.image.astype(np.float64) - alphas[i] * m)
        assert kl[i] == pytest.approx(kl_ref(shifted, txt), rel=1e-6)
    assert metrics["summary"]["argmin_alpha"] == pytest.approx(alphas[np.argmin(kl)])
    assert metrics["estimator"]["bins"] == p["bins"]
    assert "KL(image || text)" in metrics["estimator"]["divergence"]


def test_conformity_compare_without_external_sets(clip500, clip500_h5, stages, tmp_path):
    outs, log = run_script(
        "conformity_compare",
        {"reference": clip500_h5},
        {"p": stages["conformity_compare"], "demo": False, "sets": []},
        tmp_path,
    )
    metrics = json.loads(outs["metrics"].read_text())
    assert metrics["summary"]["n_sets"] == 0 and metrics["summary"]["sets"] == {}
    assert "no external sets" in metrics["summary"]["note"]
    assert metrics["summary"]["reference"]["image"]["mean"] == pytest.approx(
        brute_conformity(clip500.image).mean(), abs=1e-9
    )


def test_conformity_compare_with_external_sets(clip500, clip500_h5, stages, write_h5, tmp_path):
    from clipgeom.h5io import Embeddings, write_embeddings

    rng = np.random.default_rng(19)
    gen_img = clip500.image[:120] + 0.05 * rng.normal(size=(120, 512)).astype(np.float32)
    ext_images = write_h5(gen_img, clip500.text[:120], name="ext_pairs.h5")
    gen_txt = clip500.text[200:260] * 4.0  # captions only, raw scale differs
    cap_path = tmp_path / "captions_only.h5"
    write_embeddings(
        cap_path,
        Embeddings(
            image=np.zeros((0, 512), np.float32),
            text=gen_txt,
            image_id=np.zeros(0, np.int64),
            image_file=np.zeros(0, dtype=object),
            text_id=np.arange(60),
            text_image_index=-np.ones(60, np.int64),
            caption=np.array([f"gen {i}" for i in range(60)], dtype=object),
            attrs={"model": "test"},
        ),
    )
    outs, log = run_script(
        "conformity_compare",
        {"reference": clip500_h5, "external": f"{ext_images},{cap_path}"},
        {"p": stages["conformity_compare"], "demo": False, "sets": ["gen_a", "gen_caps"]},
        tmp_path / "out",
    )
    s = json.loads(outs["metrics"].read_text())["summary"]
    assert s["n_sets"] == 2
    ref_img = brute_conformity(clip500.image).mean()
    exp_img = brute_cross(gen_img, clip500.image)
    assert s["sets"]["gen_a"]["image"]["mean"] == pytest.approx(exp_img.mean(), abs=1e-9)
    assert s["sets"]["gen_a"]["image"]["diff_from_reference"] == pytest.approx(exp_img.mean() - ref_img, abs=1e-9)
    exp_txt = brute_cross(gen_txt, clip500.text)
    assert s["sets"]["gen_caps"]["text"]["mean"] == pytest.approx(exp_txt.mean(), abs=1e-9)
    assert "image" not in s["sets"]["gen_caps"]
    rows = [r for r in read_csv(outs["values"]) if r["set"] == "gen_caps"]
    np.testing.assert_allclose([float(r["conformity"]) for r in rows], exp_txt, atol=1e-9)


def test_vslerp_script_end_to_end(clip500, clip500_h5, stages, tmp_path):
    p = dict(stages["vslerp"], pairs=[[3, 250], ["17", 400]], neighbours=2)
    outs, log = run_script("vslerp", {"embeddings": clip500_h5}, {"p": p, "demo": False, "images": None}, tmp_path)
    metrics = json.loads(outs["metrics"].read_text())
    assert metrics["summary"]["n_pairs"] == 2 and metrics["summary"]["pairs_from"] == "configured"
    rows = read_csv(outs["values"])
    assert len(rows) == 2 * len(p["alphas"]) * p["steps"]
    v = clip500.image.astype(np.float64)
    m = v.mean(axis=0)
    for r in rows:
        if r["step"] in ("0", str(p["steps"] - 1)):
            # the endpoints are the input images themselves: nearest neighbour is that image with cos 1
            end = int(r["id_a"]) if r["step"] == "0" else int(r["id_b"])
            assert int(r["nearest_1_id"]) == end
            assert float(r["nearest_1_cos"]) == pytest.approx(1.0, abs=1e-9)
            assert float(r["norm"]) == pytest.approx(np.linalg.norm(v[end]), abs=1e-9)
            assert float(r["cos_to_mean"]) == pytest.approx(
                v[end] @ m / (np.linalg.norm(v[end]) * np.linalg.norm(m)), abs=1e-9
            )
    assert metrics["endpoint_max_abs_error"] < 1e-12


def test_vslerp_script_unknown_id_is_named(clip500_h5, stages, tmp_path):
    p = dict(stages["vslerp"], pairs=[[3, 123456789]])
    _, err = run_script(
        "vslerp", {"embeddings": clip500_h5}, {"p": p, "demo": False, "images": None}, tmp_path, expect_ok=False
    )
    assert "123456789" in err


def test_rules_dry_run(tmp_path):
    """The four rules parse and resolve their inputs (external sets included) on a small demo config."""
    import yaml

    snakefile = REPO / "Snakefile"
    if not snakefile.is_file():
        pytest.skip("no Snakefile in this checkout")
    config = {
        "datasets": {
            "ref": {"kind": "demo", "n_images": 8},
            "gen": {"kind": "demo", "n_images": 4, "seed": 1, "analyse": False, "reference": "ref"},
            "other": {"kind": "demo", "n_images": 4, "seed": 2, "analyse": False},
        },
        "models": {
            "tiny": {
                "arch": "tiny-clip",
                "model_config": "config/models/tiny-clip.json",
                "pretrained": "results/models/tiny.pt",
                "init_seed": 0,
                "device": "cpu",
            }
        },
        "stages": {"vslerp": {"pairs": [[0, 1]]}},
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    targets = [
        f"results/{d}/tiny/{s}/metrics.json"
        for d in ("ref", "other")
        for s in ("conformity", "kl_matching", "conformity_compare", "vslerp")
    ]
    res = subprocess.run(
        [
            str(Path(sys.executable).with_name("snakemake")),
            "-n",
            "--snakefile",
            str(snakefile),
            "-d",
            str(tmp_path),
            "--configfile",
            str(cfg),
            "--cores",
            "1",
            *targets,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr[-4000:]
    out = res.stdout + res.stderr
    jobs = out.split("rule ")
    compare = {j.split("wildcards: ")[1].split("\n")[0]: j for j in jobs if j.startswith("conformity_compare:")}
    assert set(compare) == {"dataset=ref, model=tiny", "dataset=other, model=tiny"}
    # ref's compare job takes the external set as input; other (no external sets) runs on its own embeddings
    assert "results/gen/tiny/embeddings.h5" in compare["dataset=ref, model=tiny"]
    assert "results/gen/tiny/embeddings.h5" not in compare["dataset=other, model=tiny"]
    for rule in ("conformity", "kl_matching", "vslerp"):
        assert out.count(f"rule {rule}:") == 2
