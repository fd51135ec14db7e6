"""The paper's estimators in the separability and thin_shell stages (issue 11), each against an
independent computation: hand numbers from the paper, numpy/scipy brute force, Monte Carlo.

* §3 thin shell with ``thin_shell.ddof`` (the paper's 7.6007 needs ddof = 1);
* §4 KL of the top feature: Gaussian closed form (headline), density-histogram form (hypothesis),
  the ε-capped histogram form and its saturation flag;
* §4 tag features as a curve over the Sep threshold, and the thresholds giving the paper's 9;
* the paper's named features 93, 134, 494 and a random-feature SVM control.
"""

from __future__ import annotations

import copy
import json
import math
import runpy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from clipgeom import geometry as g
from clipgeom.config import validate_config
from clipgeom.kl import density_histogram_kl, gaussian_kl, histogram_kl, histogram_kl_saturation
from clipgeom.stages import geometry as gs

REPO = Path(__file__).resolve().parents[1]


def _defaults() -> dict:
    cfg = {"datasets": {"d": {"kind": "demo"}}, "models": {"m": {"arch": "x"}}}
    validate_config(cfg, REPO / "config" / "schema")
    return cfg["stages"]


DEFAULTS = _defaults()


def params(stage, **over):
    p = copy.deepcopy(DEFAULTS[stage])
    p.update(over)
    return p


# small SVM budget: the SVM on all features is not under test here
FAST = dict(svm_max_samples=500, svm_folds=3, svm_random_draws=3)


# ---------------------------------------------------------------------------
# §3 thin shell, ddof
# ---------------------------------------------------------------------------
def test_schema_defaults():
    assert DEFAULTS["thin_shell"]["ddof"] == 1
    assert DEFAULTS["separability"]["paper_features"] == [93, 134, 494]
    assert DEFAULTS["separability"]["paper_n_tag_features"] == 9


def test_rms_norm_ddof_reproduces_the_papers_7_6007():
    # paper §3: mu_norm 7.5873, var(y) 0.1914, N ≈ 5000 (COCO val):
    # (57.56712 + 0.1914) * 5000/4999 = 57.77007 -> sqrt 7.60066; population: sqrt(57.75852) = 7.59990
    mu, var_y, n = 7.5873, 0.1914, 5000
    assert round(g.rms_norm_ddof(mu * mu + var_y, n, 1), 4) == 7.6007
    assert round(g.rms_norm_ddof(mu * mu + var_y, n, 0), 4) == 7.5999
    assert g.rms_norm_ddof(mu * mu + var_y, n, 1) == pytest.approx(math.sqrt((mu * mu + var_y) * n / (n - 1)))
    # the paper's 0.18% needs ddof = 1 (ddof 0: 0.166%)
    rms1 = g.rms_norm_ddof(mu * mu + var_y, n, 1)
    assert round(100 * (rms1 - mu) / rms1, 2) == 0.18
    assert math.isnan(g.rms_norm_ddof(1.0, 1, 1))


def test_thin_shell_pure_ddof_hand():
    # rows (±1, 0), (0, ±3): norms 1, 1, 3, 3; population var 1, ddof 1: 4/3;
    # tr C_pop = 5, tr C_1 = 5 * 4/3 = 20/3
    x = np.array([[1.0, 0], [-1, 0], [0, 3], [0, -3]])
    r = g.thin_shell(g.row_norms(x), x.var(0).sum(), ddof=1)
    assert r["mu_norm"] == pytest.approx(2.0)
    assert r["var_y"] == pytest.approx(4 / 3)
    assert r["rms_norm"] == pytest.approx(math.sqrt(20 / 3))
    assert r["rel_error"] == pytest.approx(1 - 2 / math.sqrt(20 / 3))
    assert r["identity_residual"] == pytest.approx(0.0, abs=1e-12) and r["ddof"] == 1


@pytest.mark.parametrize("ddof", [0, 1])
def test_thin_shell_stage_matches_numpy(write_h5, ddof):
    rng = np.random.default_rng(3)
    n, d = 300, 16
    img = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, d) + 3.0
    txt = rng.normal(size=(n + 20, d)) * 0.7 - 1.0
    path = write_h5(img, txt[:n])
    r = gs.compute_thin_shell(path, params("thin_shell", ddof=ddof, chunk_rows=64))
    assert r.summary["ddof"] == ddof
    for mod, x in (("image", img), ("text", txt[:n])):
        x = x.astype(np.float32).astype(float)  # stored precision
        cn = np.linalg.norm(x - x.mean(0), axis=1)
        rms = math.sqrt(np.trace(np.cov(x.T, ddof=ddof)))
        s = r.summary[mod]
        assert s["mu_norm"] == pytest.approx(cn.mean(), rel=1e-9)
        assert s["var_y"] == pytest.approx(np.var(cn, ddof=ddof), rel=1e-8)
        assert s["rms_norm"] == pytest.approx(rms, rel=1e-9)
        assert s["rel_error"] == pytest.approx((rms - cn.mean()) / rms, rel=1e-6)
        assert r.details[mod]["rms_norm_from_norms"] == pytest.approx(rms, rel=1e-9)


# ---------------------------------------------------------------------------
# §4 KL estimators
# ---------------------------------------------------------------------------
def test_gaussian_kl_against_monte_carlo_and_scipy():
    mu_p, var_p, mu_q, var_q = 0.3, 0.5, -1.0, 2.0
    rng = np.random.default_rng(0)
    z = rng.normal(mu_p, math.sqrt(var_p), 400_000)
    lp = stats.norm.logpdf(z, mu_p, math.sqrt(var_p))
    lq = stats.norm.logpdf(z, mu_q, math.sqrt(var_q))
    mc, se = float(np.mean(lp - lq)), float(np.std(lp - lq) / math.sqrt(z.size))
    kl = float(gaussian_kl(mu_p, var_p, mu_q, var_q))
    assert abs(kl - mc) < 5 * se
    # numerical integral with scipy
    from scipy.integrate import quad

    def f(t):
        lp, lq = stats.norm.logpdf(t, mu_p, math.sqrt(var_p)), stats.norm.logpdf(t, mu_q, math.sqrt(var_q))
        return np.exp(lp) * (lp - lq)

    assert kl == pytest.approx(quad(f, -15, 15)[0], rel=1e-7)


def test_histogram_saturation_hand():
    assert histogram_kl_saturation([3, 2, 0, 0], [0, 0, 1, 4]) == (True, 1.0)
    assert histogram_kl_saturation([3, 1, 0], [1, 0, 5]) == (True, 0.25)
    assert histogram_kl_saturation([3, 1, 2], [1, 1, 5]) == (False, 0.0)


def test_density_kl_is_the_histogram_kl_over_the_width_brute_force():
    p, q, w = np.array([5, 3, 2]), np.array([2, 2, 6]), 0.25
    f, h = p / (p.sum() * w), q / (q.sum() * w)
    brute = float(np.sum(f * np.log(f / h)))  # densities, summed without the bin width
    assert density_histogram_kl(p, q, w, eps=0.0) == pytest.approx(brute, rel=1e-12)
    assert density_histogram_kl(p, q, w, eps=0.0) == pytest.approx(histogram_kl(p, q, 0.0) / w)


def _sep_stage(path, **over):
    return gs.compute_separability(path, params("separability", **{**FAST, **over}))


def test_saturation_flag_on_planted_supports(write_h5):
    rng = np.random.default_rng(1)
    n = 2000
    # non-overlapping: feature 0 image in [0, 1], text in [5, 6]
    img = rng.uniform(0, 1, (n, 3))
    txt = rng.uniform(0, 1, (n, 3))
    txt[:, 0] += 5.0
    r = _sep_stage(write_h5(img, txt, name="disjoint.h5"), kl_bins=10)
    s = r.summary
    assert s["top2_features"][0] == 0
    assert s["kl_top_feature_histogram_saturated"] is True
    assert r.details["kl"]["top_feature_unmatched_mass"] == 1.0
    # the ε cap: disjoint supports give log(1/ε) − H(P) whatever the separation
    i0 = img[:, 0].astype(np.float32).astype(float)
    cp, _ = np.histogram(i0, bins=10, range=(i0.min(), txt[:, 0].astype(np.float32).max()))
    pb = cp[cp > 0] / n
    assert s["kl_top_feature_histogram"] == pytest.approx(math.log(1e10) + float(np.sum(pb * np.log(pb))), rel=1e-6)
    # the headline does not saturate: Gaussian closed form from the sample moments
    i0, t0 = img[:, 0].astype(np.float32).astype(float), txt[:, 0].astype(np.float32).astype(float)
    assert s["kl_top_feature"] == pytest.approx(
        0.5 * math.log(t0.var() / i0.var()) + (i0.var() + (i0.mean() - t0.mean()) ** 2) / (2 * t0.var()) - 0.5, rel=1e-6
    )
    assert s["kl_top_feature"] > 100
    # overlapping: same support, slightly shifted; 10 bins, every bin populated in both
    txt2 = rng.uniform(0, 1, (n, 3))
    txt2[:, 0] += 0.1
    r2 = _sep_stage(write_h5(img, txt2, name="overlap.h5"), kl_bins=10)
    assert r2.summary["top2_features"][0] == 0
    assert r2.summary["kl_top_feature_histogram_saturated"] is False
    assert r2.details["kl"]["top_feature_unmatched_mass"] == 0.0
    # the density KL against a brute-force np.histogram on the pooled range
    t2 = txt2[:, 0].astype(np.float32).astype(float)
    lo, hi = min(i0.min(), t2.min()), max(i0.max(), t2.max())
    cp, edges = np.histogram(i0, bins=10, range=(lo, hi))
    cq, _ = np.histogram(t2, bins=10, range=(lo, hi))
    w = edges[1] - edges[0]
    f, h = cp / (n * w), cq / (n * w)
    assert r2.summary["kl_top_feature_density"] == pytest.approx(float(np.sum(f * np.log(f / h))), rel=1e-6)
    assert r2.summary["kl_estimator"] == "gaussian closed form, image‖text"


# ---------------------------------------------------------------------------
# §4 tag threshold curve
# ---------------------------------------------------------------------------
def test_tag_threshold_curve_brute_force():
    rng = np.random.default_rng(5)
    sep = np.concatenate([rng.exponential(0.5, 200), [1.2, 1.2, 0.05, 3.0]])
    grid = g.threshold_grid(3.0, 0.05)
    assert grid.size == 61 and grid[0] == 0.0 and grid[-1] == 3.0 and grid[24] == 1.2
    brute = [int(np.sum(sep > t)) for t in grid]
    assert g.tag_threshold_curve(sep, grid).tolist() == brute
    for target in (0, 1, 9, 50, 204):
        hits = [t for t, c in zip(grid, brute, strict=False) if c == target]
        want = [hits[0], hits[-1]] if hits else None
        assert g.thresholds_for_count(grid, brute, target) == want
    assert g.thresholds_for_count([0.0, 1.0], [5, 3], 4) is None


# ---------------------------------------------------------------------------
# The 500 real CLIP pairs (ViT-B/16): every new key against numpy brute force
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip500_sep(clip500_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("sep_estimators")
    p = params("separability", svm_random_draws=3)
    files = {"metrics": out / "metrics.json", "values": out / "values.csv", "curve": out / "tag_threshold_curve.csv"}
    for key, name in {
        "sorted": "sep_sorted",
        "mean_std": "top_mean_over_std",
        "hist": "top_feature_hist",
        "svm": "svm_top2",
    }.items():
        files[f"{key}_png"], files[f"{key}_pdf"] = out / f"{name}.png", out / f"{name}.pdf"
    job = SimpleNamespace(
        input=SimpleNamespace(embeddings=str(clip500_h5)),
        output=SimpleNamespace(**{k: str(v) for k, v in files.items()}),
        params=SimpleNamespace(p=p, demo=True),
        wildcards=SimpleNamespace(dataset="coco500", model="ViT-B-16"),
        log=[str(out / "separability.log")],
        threads=1,
    )
    mod = runpy.run_path(str(REPO / "workflow" / "scripts" / "separability.py"), run_name="clipgeom_test")
    mod["main"](job)
    return json.loads(files["metrics"].read_text()), files, p


def test_clip500_kl_keys(clip500, clip500_sep):
    m, _, p = clip500_sep
    s = m["summary"]
    img, txt = clip500.image.astype(float), clip500.text.astype(float)
    mi, mt, vi, vt = img.mean(0), txt.mean(0), img.var(0), txt.var(0)
    sep = np.abs(mi - mt) / np.sqrt(vi + vt)
    f = int(np.argmax(sep))
    kl = 0.5 * np.log(vt / vi) + (vi + (mi - mt) ** 2) / (2 * vt) - 0.5
    assert s["kl_top_feature"] == pytest.approx(kl[f], rel=1e-6)
    assert s["kl_top_feature"] == pytest.approx(257.2, abs=0.5)  # issue 11
    # the old ε-capped histogram KL is reported as secondary, and it is saturated on these pairs
    lo, hi = min(img[:, f].min(), txt[:, f].min()), max(img[:, f].max(), txt[:, f].max())
    cp, edges = np.histogram(img[:, f], bins=p["kl_bins"], range=(lo, hi))
    cq, _ = np.histogram(txt[:, f], bins=p["kl_bins"], range=(lo, hi))
    eps = p["kl_eps"]
    pp, qq = cp / cp.sum() + eps, cq / cq.sum() + eps
    pp, qq = pp / pp.sum(), qq / qq.sum()
    hkl = float(np.sum(pp * np.log(pp / qq)))
    assert s["kl_top_feature_histogram"] == pytest.approx(hkl, rel=1e-6)
    assert s["kl_top_feature_histogram_saturated"] is bool(np.any((cp > 0) & (cq == 0)))
    assert s["kl_top_feature_histogram_saturated"] is True
    assert s["kl_top_feature_density"] == pytest.approx(hkl / (edges[1] - edges[0]), rel=1e-6)


def test_clip500_tag_curve_and_paper_count(clip500, clip500_sep):
    m, files, p = clip500_sep
    s = m["summary"]
    img, txt = clip500.image.astype(float), clip500.text.astype(float)
    sep = np.abs(img.mean(0) - txt.mean(0)) / np.sqrt(img.var(0) + txt.var(0))
    grid = np.round(np.arange(0, 3.0 + 1e-9, 0.05), 12)
    brute = [int(np.sum(sep > t)) for t in grid]
    curve = m["tag_threshold_curve"]
    assert curve["thresholds"] == pytest.approx(grid.tolist())
    assert curve["n_tag_features"] == brute
    csv = np.genfromtxt(files["curve"], delimiter=",", names=True)
    assert csv["threshold"] == pytest.approx(grid) and csv["n_tag_features"].astype(int).tolist() == brute
    assert s["tag_threshold"] == 1.0 and s["n_tag_features"] == int(np.sum(sep > 1.0)) == 17
    hits = [t for t, c in zip(grid, brute, strict=False) if c == 9]
    assert s["tag_threshold_for_paper_count"] == pytest.approx([hits[0], hits[-1]])
    assert s["tag_threshold_for_paper_count"] == pytest.approx([1.2, 1.2])


def test_clip500_paper_features_and_random_control(clip500, clip500_sep):
    m, _, p = clip500_sep
    s = m["summary"]
    img, txt = clip500.image.astype(float), clip500.text.astype(float)
    mi, mt, vi, vt = img.mean(0), txt.mean(0), img.var(0), txt.var(0)
    sep = np.abs(mi - mt) / np.sqrt(vi + vt)
    kl = 0.5 * np.log(vt / vi) + (vi + (mi - mt) ** 2) / (2 * vt) - 0.5
    pf = s["paper_features"]
    assert pf["indices"] == [93, 134, 494]
    assert pf["sep"] == pytest.approx(sep[[93, 134, 494]].tolist(), rel=1e-9)
    assert pf["rank_by_sep"] == [int(np.sum(sep > sep[f])) + 1 for f in (93, 134, 494)]
    assert pf["kl_gaussian"] == pytest.approx(kl[[93, 134, 494]].tolist(), rel=1e-6)
    x = np.concatenate([clip500.image, clip500.text])
    y = np.r_[np.zeros(500, int), np.ones(500, int)]
    ref = g.svm_cv_accuracy(x[:, [93, 134]], y, p["svm_folds"], p["seed"], p["svm_c"], p["svm_max_iter"])
    assert pf["svm_accuracy"] == pytest.approx(ref["accuracy"])
    # random control: the mean over the recorded draws, each a distinct pair; far below the top-2's 100%
    ctrl = m["svm"]["random2_control"]
    assert len(ctrl["features"]) == 3 and all(a != b for a, b in ctrl["features"])
    assert s["svm_random2_accuracy"] == pytest.approx(np.mean(ctrl["accuracy"]))
    assert ctrl["accuracy"][0] == pytest.approx(
        g.svm_cv_accuracy(x[:, ctrl["features"][0]], y, p["svm_folds"], p["seed"], p["svm_c"], p["svm_max_iter"])[
            "accuracy"
        ]
    )
    assert s["svm_top2_accuracy"] == 1.0 and s["svm_random2_accuracy"] < 0.9


def test_paper_features_beyond_d_are_skipped(write_h5, caplog):
    rng = np.random.default_rng(2)
    img, txt = rng.normal(size=(200, 8)), rng.normal(size=(200, 8)) + 0.5
    path = write_h5(img, txt)
    with caplog.at_level("WARNING", logger="clipgeom.geometry"):
        r = _sep_stage(path, paper_features=[3, 5, 494])
    pf = r.summary["paper_features"]
    assert pf["sep"][2] is None and pf["rank_by_sep"][2] is None and pf["kl_gaussian"][2] is None
    assert pf["sep"][0] is not None and pf["svm_accuracy"] is not None
    assert "494" in caplog.text
    r = _sep_stage(path, paper_features=[93, 134])
    assert r.summary["paper_features"]["svm_accuracy"] is None and r.summary["paper_features"]["sep"] == [None, None]
