"""Tests of the geometry stages: separability, thin_shell, covariance, origin_distance.

Three kinds of checks, each against an independent computation:
* hand-checkable formulas on tiny arrays (numbers worked out by hand in the comments);
* planted data — two Gaussian ellipsoids in 512-d with known means and covariances — whose
  separability, tag features, thin-shell numbers, ‖m‖/‖σ‖, ODD and KL are predicted from the
  planted parameters, within sampling error;
* the 500 real CLIP pairs through every stage script end to end, compared with brute-force numpy.
"""

from __future__ import annotations

import copy
import json
import math
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from clipgeom import geometry as g
from clipgeom.config import validate_config
from clipgeom.kl import gaussian_kl, histogram_kl
from clipgeom.stages import geometry as gs

REPO = Path(__file__).resolve().parents[1]
STAGES = ("separability", "thin_shell", "covariance", "origin_distance")
FIGURES = {
    "separability": {
        "sorted": "sep_sorted",
        "mean_std": "top_mean_over_std",
        "hist": "top_feature_hist",
        "svm": "svm_top2",
    },
    "thin_shell": {"features": "centred_features", "norms": "norms"},
    "covariance": {
        "variance": "variance_hist",
        "odd": "odd_hist",
        "spectrum": "eigen_spectrum",
        "whitening": "whitening",
    },
    "origin_distance": {"origin": "origin_distance", "root": "root_cosine_distance"},
}


def stage_defaults() -> dict:
    cfg = {"datasets": {"d": {"kind": "demo"}}, "models": {"m": {"arch": "x"}}}
    validate_config(cfg, REPO / "config" / "schema")
    return {s: cfg["stages"][s] for s in STAGES}


DEFAULTS = stage_defaults()


def params(stage, **over):
    p = copy.deepcopy(DEFAULTS[stage])
    p.update(over)
    return p


def make_job(stage, h5, outdir: Path, p=None, demo=False):
    out = {"metrics": str(outdir / stage / "metrics.json"), "values": str(outdir / stage / "values.csv")}
    if stage == "separability":
        out["curve"] = str(outdir / stage / "tag_threshold_curve.csv")
    for key, name in FIGURES[stage].items():
        out[f"{key}_png"] = str(outdir / stage / f"{name}.png")
        out[f"{key}_pdf"] = str(outdir / stage / f"{name}.pdf")
    return SimpleNamespace(
        input=SimpleNamespace(embeddings=str(h5)),
        output=SimpleNamespace(**out),
        params=SimpleNamespace(p=p if p is not None else params(stage), demo=demo),
        wildcards=SimpleNamespace(dataset="coco500", model="ViT-B-16"),
        log=[str(outdir / f"{stage}.log")],
        threads=1,
    )


def run_stage_script(stage, job):
    mod = runpy.run_path(str(REPO / "workflow" / "scripts" / f"{stage}.py"), run_name="clipgeom_test")
    mod["main"](job)
    return json.loads(Path(job.output.metrics).read_text())


# ---------------------------------------------------------------------------
# Hand-checkable formulas
# ---------------------------------------------------------------------------
def test_separability_hand():
    # feature 0: image [1, 3] -> mean 2, var 1; text [6, 8] -> mean 7, var 1: Sep = 5/sqrt(2)
    # feature 1: identical distributions -> 0
    img = np.array([[1.0, 0.0], [3.0, 2.0]])
    txt = np.array([[6.0, 0.0], [8.0, 2.0]])
    sep = g.separability(img.mean(0), img.var(0), txt.mean(0), txt.var(0))
    assert sep == pytest.approx([5 / math.sqrt(2), 0.0])
    # zero pooled variance: different means -> inf, equal means -> 0
    assert g.separability([1.0, 2.0], [0, 0], [0.0, 2.0], [0, 0]).tolist() == [math.inf, 0.0]


def test_mean_over_std_top_and_tag_features_hand():
    # |m|/sigma: |-3|/sqrt(9) = 1, 4/sqrt(4) = 2, 0/1 = 0
    assert g.mean_over_std([-3.0, 4.0, 0.0], [9.0, 4.0, 1.0]) == pytest.approx([1.0, 2.0, 0.0])
    assert g.top_features([0.5, 3.0, 2.0, 3.0], 3).tolist() == [1, 3, 2]  # ties: lower index first
    assert g.tag_features([0.5, 3.0, 1.0, 2.0], 1.0).tolist() == [1, 3]  # strictly above, by Sep desc


def test_histogram_kl_hand():
    # p = [0.5, 0.5], q = [0.25, 0.75]: 0.5 ln 2 + 0.5 ln(2/3) = 0.143841
    assert histogram_kl([2, 2], [1, 3], eps=0.0) == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))
    assert histogram_kl([5, 5], [1, 1], eps=1e-10) == pytest.approx(0.0, abs=1e-12)
    # disjoint supports: ~ log(1/eps)
    assert histogram_kl([1, 0], [0, 1], eps=1e-10) == pytest.approx(math.log(1e10), rel=1e-6)


def test_gaussian_kl_hand():
    # KL(N(0,1) || N(1,4)) = ln 2 + (1 + 1)/8 - 1/2 = 0.443147
    assert gaussian_kl(0.0, 1.0, 1.0, 4.0) == pytest.approx(math.log(2) + 0.25 - 0.5)
    assert gaussian_kl(3.0, 2.0, 3.0, 2.0) == pytest.approx(0.0)


def test_feature_histograms_match_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 3)) * [1.0, 2.0, 0.5]
    lo, hi = x.min(0), x.max(0)
    h = g.FeatureHistograms(lo, hi, 7)
    for chunk in np.array_split(x, 6):
        h.update(chunk)
    for j in range(3):
        ref, edges = np.histogram(x[:, j], bins=7, range=(lo[j], hi[j]))
        assert h.counts[j].tolist() == ref.tolist()
        assert h.edges[j] == pytest.approx(edges)
    assert h.n_clipped == 0
    # hand: values 0, 0.5, 1 on [0, 1] with 2 bins -> [1, 2] (right edge closed)
    h2 = g.FeatureHistograms([0.0], [1.0], 2)
    h2.update(np.array([[0.0], [0.5], [1.0], [2.0]]))
    assert h2.counts[0].tolist() == [1, 3] and h2.n_clipped == 1


def test_thin_shell_hand():
    # rows (±1, 0), (0, ±3): mean 0, norms 1, 1, 3, 3 -> mu_norm 2, var(y) 1;
    # tr C = (1 + 1)/4 + (9 + 9)/4 = 5 = mu^2 + var(y); rms sqrt(5); rel error (sqrt5 - 2)/sqrt5
    x = np.array([[1.0, 0], [-1, 0], [0, 3], [0, -3]])
    r = g.thin_shell(g.row_norms(x - x.mean(0)), x.var(0).sum())
    assert r["mu_norm"] == pytest.approx(2.0)
    assert r["var_y"] == pytest.approx(1.0)
    assert r["rms_norm"] == pytest.approx(math.sqrt(5))
    assert r["rel_error"] == pytest.approx((math.sqrt(5) - 2) / math.sqrt(5))
    assert r["identity_residual"] == pytest.approx(0.0, abs=1e-12)
    # a perfect shell: (3, 4) and (-3, -4): norms 5, 5 -> var(y) 0, rel error 0
    r = g.thin_shell([5.0, 5.0], 25.0)
    assert (r["mu_norm"], r["var_y"], r["rel_error"]) == pytest.approx((5.0, 0.0, 0.0))


def test_off_diagonal_dominance_hand():
    c = np.array([[2.0, 1, -1], [1, 4, 0], [-1, 0, 1]])
    # row 0: (1 + 1)/2 = 1; row 1: 1/4; row 2: 1/1
    assert g.off_diagonal_dominance(c) == pytest.approx([1.0, 0.25, 1.0])


def test_effective_rank_and_participation_ratio_hand():
    assert g.effective_rank([1.0, 1.0, 0.0, 0.0]) == pytest.approx(2.0)
    assert g.participation_ratio([1.0, 1.0, 0.0, 0.0]) == pytest.approx(2.0)
    # [3, 1]: p = (.75, .25), H = -(.75 ln .75 + .25 ln .25) = 0.562335 -> exp = 1.754765; PR = 16/10
    assert g.effective_rank([3.0, 1.0]) == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert g.effective_rank([3.0, 1.0]) == pytest.approx(1.754765, rel=1e-6)
    assert g.participation_ratio([3.0, 1.0]) == pytest.approx(1.6)
    assert g.effective_rank(np.ones(7)) == pytest.approx(7.0)
    assert g.eigen_spectrum(np.diag([1.0, 3.0, 2.0])) == pytest.approx([3.0, 2.0, 1.0])


def test_mean_to_std_ratio_and_angle_hand():
    # ||(6, 8)|| = 10, ||sigma|| = sqrt(9 + 16) = 5 -> 2
    assert g.mean_to_std_ratio([6.0, 8.0], [9.0, 16.0]) == pytest.approx(2.0)
    assert g.angle_deg([1.0, 0.0], [1.0, 1.0]) == pytest.approx(45.0)
    assert g.angle_deg([1.0, 0.0], [-2.0, 0.0]) == pytest.approx(180.0)


def test_mean_pairwise_and_cross_cosine_hand():
    # (1,0), (0,1), (1,1)/√2: pair cosines 0, 1/√2, 1/√2 -> mean (2/√2)/3 = 0.471405
    v = np.array([[1.0, 0], [0, 1], [1, 1]])
    vh = v / np.linalg.norm(v, axis=1, keepdims=True)
    assert g.mean_pairwise_cosine(vh.sum(0), 3) == pytest.approx(math.sqrt(2) / 3)
    # sets {(1,0)} and {(0,1), (1,0)}: cosines 0 and 1 -> 0.5
    assert g.mean_cross_cosine([1.0, 0], 1, [1.0, 1.0], 2) == pytest.approx(0.5)


def test_whitening_chi_kurtosis_hand():
    w, lam = g.whitening_matrix(np.diag([4.0, 1.0]))
    assert lam == pytest.approx([4.0, 1.0])
    assert np.abs(w) == pytest.approx(np.array([[0.5, 0.0], [0.0, 1.0]]))
    # rank-deficient: the null direction is dropped
    w, lam = g.whitening_matrix(np.diag([2.0, 0.0]))
    assert lam.tolist() == [2.0] and w.shape == (1, 2)
    assert g.chi_mean(1) == pytest.approx(math.sqrt(2 / math.pi))
    assert g.chi_mean(2) == pytest.approx(math.sqrt(math.pi / 2))
    assert g.chi_mean(512) == pytest.approx(stats.chi.mean(512))
    # z = ±1: m2 = 1, m4 = 1 -> excess kurtosis 1 - 3 = -2
    assert g.excess_kurtosis(1.0, 1.0) == pytest.approx(-2.0)


def test_ks_chi_matches_scipy():
    rng = np.random.default_rng(2)
    x = np.linalg.norm(rng.normal(size=(400, 5)), axis=1)
    ref = stats.kstest(x, "chi", args=(5,))
    d, pval = g.ks_chi(x, 5)
    assert d == pytest.approx(ref.statistic, rel=1e-9)
    assert pval == pytest.approx(ref.pvalue, abs=0.02)  # asymptotic vs exact p-value
    assert g.ks_chi(x + 1.0, 5)[0] > 0.3  # shifted: far from chi(5)


def test_root_and_cosine_distance_hand():
    # image (2, 0), text (0, 3): unit vectors (1,0), (0,1) -> ROOT (0.5, 0.5); 1 - cos = 1 - 1/√2
    root = g.root_vector([1.0, 0.0], 1, [0.0, 1.0], 1)
    assert root == pytest.approx([0.5, 0.5])
    cd = g.cosine_distance(np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0]]), root)
    assert cd == pytest.approx([1 - 1 / math.sqrt(2), 1 - 1 / math.sqrt(2), 2.0])
    assert g.row_norms(np.array([[3.0, 4.0], [0.0, 0.0]])).tolist() == [5.0, 0.0]


def test_moment_accumulator_hand_and_streaming():
    # rows (1,2), (3,4), (5,9) in chunks of 1 and 2: mean (3, 5); var ((4+0+4)/3, (9+1+16)/3)
    acc = g.MomentAccumulator(full_cov=True, keep_norms=True)
    acc.update(np.array([[1.0, 2.0]])).update(np.array([[3.0, 4.0], [5.0, 9.0]]))
    assert acc.mean == pytest.approx([3.0, 5.0])
    assert acc.var == pytest.approx([8 / 3, 26 / 3])
    # cov_xy = ((-2)(-3) + 0 + 2*4)/3 = 14/3
    assert acc.cov == pytest.approx(np.array([[8 / 3, 14 / 3], [14 / 3, 26 / 3]]))
    assert acc.norms == pytest.approx([math.sqrt(5), 5.0, math.sqrt(106)])
    assert acc.min.tolist() == [1.0, 2.0] and acc.max.tolist() == [5.0, 9.0]
    # large offset, many uneven chunks: agrees with numpy in float64 (no cancellation)
    rng = np.random.default_rng(3)
    x = 1e4 + rng.normal(size=(1001, 6)) @ rng.normal(size=(6, 6))
    acc = g.MomentAccumulator(full_cov=True)
    diag = g.MomentAccumulator(full_cov=False)
    for c in np.array_split(x, [1, 2, 50, 51, 700]):
        acc.update(c)
        diag.update(c)
    assert acc.n == 1001
    assert acc.mean == pytest.approx(x.mean(0), rel=1e-13)
    assert acc.cov == pytest.approx(np.cov(x.T, bias=True), rel=1e-9, abs=1e-9)
    assert diag.var == pytest.approx(x.var(0), rel=1e-9)
    xh = x / np.linalg.norm(x, axis=1, keepdims=True)
    assert acc.sum_unit == pytest.approx(xh.sum(0))


def test_svm_helpers_separate_a_hand_made_set():
    # class 0 left of x = 0, class 1 right: held-out accuracy 1 and a boundary near x = 0
    rng = np.random.default_rng(0)
    x0 = np.c_[rng.uniform(-3, -1, 40), rng.normal(size=40)]
    x1 = np.c_[rng.uniform(1, 3, 40), rng.normal(size=40)]
    x, y = np.r_[x0, x1], np.r_[np.zeros(40, int), np.ones(40, int)]
    r = g.svm_cv_accuracy(x, y, folds=4, seed=0)
    assert r["accuracy"] == 1.0 and len(r["accuracy_folds"]) == 4
    w, b, acc = g.svm_boundary(x, y)
    assert acc == 1.0
    assert abs(w[0]) > 5 * abs(w[1])  # the boundary is nearly vertical
    assert -1.0 < -b / w[0] < 1.0  # and crosses the x axis in the gap


# ---------------------------------------------------------------------------
# Planted double ellipsoid in 512-d
# ---------------------------------------------------------------------------
D, N = 512, 20000
OFFSETS = {100: 8.0, 3: 6.0, 400: 5.0, 250: 4.0}  # difference of means (image - text): the tags
WEAK = {7: 1.0}  # a separated but not "tag" feature (Sep < 1)
BLOCKS = {"image": (list(range(10, 18)), 0.6), "text": (list(range(40, 48)), 0.5)}  # equicorrelated
PAIR = ((30, 31), -0.8)


def planted_params():
    rng = np.random.default_rng(12345)
    base = rng.normal(0.0, 0.3, D)
    out = {}
    for mod, sign in (("image", 0.5), ("text", -0.5)):
        s = rng.uniform(0.5, 1.5, D)
        for f in WEAK:
            s[f] = 1.0  # Sep = 1/sqrt(2) < the tag threshold 1
        mu = base.copy()
        for f, delta in {**OFFSETS, **WEAK}.items():
            mu[f] += sign * delta
        r = np.eye(D)
        blk, rho = BLOCKS[mod]
        r[np.ix_(blk, blk)] = rho
        r[blk, blk] = 1.0
        (a, b), rp = PAIR
        r[a, b] = r[b, a] = rp
        out[mod] = {"mu": mu, "s": s, "cov": np.outer(s, s) * r}
    return out


def planted_sample(prm, mod, n, seed):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, D))
    blk, rho = BLOCKS[mod]
    z[:, blk] = math.sqrt(rho) * rng.standard_normal((n, 1)) + math.sqrt(1 - rho) * z[:, blk]
    (a, b), rp = PAIR
    z[:, b] = rp * z[:, a] + math.sqrt(1 - rp * rp) * z[:, b]
    return prm[mod]["mu"] + z * prm[mod]["s"]


@pytest.fixture(scope="module")
def planted_h5(tmp_path_factory):
    from clipgeom.h5io import Embeddings, write_embeddings

    prm = planted_params()
    img = planted_sample(prm, "image", N, 1)
    txt = planted_sample(prm, "text", N, 2)
    path = tmp_path_factory.mktemp("planted") / "embeddings.h5"
    write_embeddings(
        path,
        Embeddings(
            image=img.astype(np.float32),
            text=txt.astype(np.float32),
            image_id=np.arange(N),
            image_file=np.asarray([""] * N, dtype=object),
            text_id=np.arange(N),
            text_image_index=np.arange(N),
            caption=np.asarray([""] * N, dtype=object),
            attrs={"model": "planted"},
        ),
    )
    return path, prm


def test_planted_covariance_is_what_the_sampler_draws():
    # guard for the expectations below: the sampler's covariance equals the planted one
    prm = planted_params()
    x = planted_sample(prm, "image", 40000, 7)
    emp = np.cov(x.T, bias=True)
    c = prm["image"]["cov"]
    blk = BLOCKS["image"][0]
    assert emp[np.ix_(blk, blk)] == pytest.approx(c[np.ix_(blk, blk)], abs=0.05)
    assert emp[30, 31] == pytest.approx(c[30, 31], abs=0.03)
    assert x.mean(0) == pytest.approx(prm["image"]["mu"], abs=0.05)


def test_planted_separability(planted_h5):
    path, prm = planted_h5
    r = gs.compute_separability(path, params("separability", svm_max_samples=3000))
    pi, pt = prm["image"], prm["text"]
    vi, vt = np.diag(pi["cov"]), np.diag(pt["cov"])
    sep_true = np.abs(pi["mu"] - pt["mu"]) / np.sqrt(vi + vt)
    sep = np.asarray(r.columns["sep"])
    # standard error of Sep = Δ/S (Δ the mean difference, S the pooled sd), delta method
    se = np.sqrt(1.0 / N + sep_true**2 * (vi**2 + vt**2) / (2 * N * (vi + vt) ** 2))
    assert np.max(np.abs(sep - sep_true) / se) < 5.0
    # the tag features are exactly the planted offsets, the top two the two largest true Sep
    assert sorted(r.details["tag_features"]) == sorted(OFFSETS)
    assert r.summary["n_tag_features"] == len(OFFSETS)
    true_top2 = np.argsort(-sep_true)[:2].tolist()
    assert r.summary["top2_features"] == true_top2
    assert r.summary["svm_top2_accuracy"] >= 0.999
    assert r.summary["svm_all_accuracy"] >= 0.999
    assert r.details["svm"]["subsample"]["image"] == {"used": 3000, "of": N}
    # KL of the weak Gaussian feature 7 against the closed form from the planted parameters
    kl_true = gaussian_kl(pi["mu"][7], vi[7], pt["mu"][7], vt[7])
    assert r.columns["kl_gaussian_image_text"][7] == pytest.approx(kl_true, rel=0.05)
    assert r.columns["kl_image_text"][7] == pytest.approx(kl_true, rel=0.15)
    # |mean|/std ranking per modality follows the planted parameters
    ms_true = np.abs(pi["mu"]) / pi["s"]
    assert [f["feature"] for f in r.details["top_mean_over_std"]["image"]][:3] == np.argsort(-ms_true)[:3].tolist()


def test_planted_thin_shell(planted_h5):
    path, prm = planted_h5
    r = gs.compute_thin_shell(path, params("thin_shell"))
    for mod in ("image", "text"):
        c = prm[mod]["cov"]
        tr, tr2 = np.trace(c), np.sum(c * c)
        s = r.summary[mod]
        # sqrt(tr C) against the planted trace; se(tr C^) = sqrt(2 tr C² / N)
        se_rms = math.sqrt(2 * tr2 / N) / (2 * math.sqrt(tr))
        assert abs(s["rms_norm"] - math.sqrt(tr)) < 5 * se_rms
        # Gaussian: var ||x~|| ≈ tr C² / (2 tr C), mu_norm ≈ sqrt(tr C - var)
        var_pred = tr2 / (2 * tr)
        assert s["var_y"] == pytest.approx(var_pred, rel=0.06)
        assert s["mu_norm"] == pytest.approx(math.sqrt(tr - var_pred), rel=1e-3)
        assert s["rel_error"] == pytest.approx(1 - math.sqrt(1 - var_pred / tr), rel=0.1)
        assert abs(r.details[mod]["identity_residual"]) < 1e-8 * tr


def test_planted_covariance(planted_h5):
    path, prm = planted_h5
    r = gs.compute_covariance(path, params("covariance"))
    for mod in ("image", "text"):
        c, mu = prm[mod]["cov"], prm[mod]["mu"]
        ratio_true = np.linalg.norm(mu) / math.sqrt(np.trace(c))
        assert r.summary[mod]["mean_to_std_ratio"] == pytest.approx(ratio_true, rel=0.01)
        # ODD of the estimate: each C^_lk ~ N(C_lk, (C_ll C_kk + C_lk²)/N), so E|C^_lk| is a
        # folded-normal mean; predict E[ODD^(l)] from the planted C
        sd = np.sqrt((np.outer(np.diag(c), np.diag(c)) + c * c) / N)
        folded = sd * math.sqrt(2 / math.pi) * np.exp(-c * c / (2 * sd * sd)) + c * (1 - 2 * stats.norm.cdf(-c / sd))
        np.fill_diagonal(folded, 0.0)
        odd_pred = folded.sum(1) / np.diag(c)
        odd = np.asarray(r.columns[f"odd_{mod}"])
        assert np.median(odd / odd_pred) == pytest.approx(1.0, abs=0.02)
        assert np.max(np.abs(odd / odd_pred - 1)) < 0.2
        # the correlated block stands out by its planted ODD (ρ Σ_k s_k / s_l over the block)
        blk, rho = BLOCKS[mod]
        odd_true = g.off_diagonal_dominance(c)
        assert odd_true[blk[0]] > 2  # the planted structure is strong enough to be checked
        noise = odd_pred - odd_true
        assert (odd[blk] - noise[blk]) == pytest.approx(odd_true[blk], rel=0.1)
        # effective rank of the planted covariance (sampling noise on 512 eigenvalues is small)
        assert r.summary[mod]["effective_rank"] == pytest.approx(g.effective_rank(np.linalg.eigvalsh(c)), rel=0.03)
        # whitened Gaussian: ||z|| ~ chi(512), kurtosis 0 along every axis (se sqrt(24/N))
        w = r.details[mod]["whitening"]
        assert w["kept_dims"] == D and not w["degenerate"]
        assert w["mean_norm"] == pytest.approx(stats.chi.mean(D), rel=1e-3)
        assert w["ks_statistic_vs_chi"] < 0.02
        assert abs(w["excess_kurtosis"]["median"]) < 5 * math.sqrt(24 / N)
    mi, mt = prm["image"]["mu"], prm["text"]["mu"]
    angle_true = math.degrees(math.acos(mi @ mt / (np.linalg.norm(mi) * np.linalg.norm(mt))))
    assert r.summary["mean_angle_deg"] == pytest.approx(angle_true, abs=0.5)


def test_whitening_detects_non_gaussian(tmp_path, write_h5):
    # independent Laplace coordinates with well separated scales: every principal axis has
    # excess kurtosis 3 (a Laplace), ||z|| is not chi; a Gaussian control gives 0
    rng = np.random.default_rng(5)
    scales = np.arange(1.0, 9.0)
    lap = rng.laplace(size=(30000, 8)) * scales + 3.0
    gau = rng.normal(size=(30000, 8)) * scales - 3.0
    path = write_h5(lap, gau)
    r = gs.compute_covariance(path, params("covariance"))
    k_img = np.asarray(r.columns["whitened_kurtosis_image"])
    k_txt = np.asarray(r.columns["whitened_kurtosis_text"])
    assert k_img == pytest.approx(np.full(8, 3.0), abs=0.5)
    assert np.abs(k_txt).max() < 0.15
    assert (
        r.details["image"]["whitening"]["ks_statistic_vs_chi"]
        > 3 * r.details["text"]["whitening"]["ks_statistic_vs_chi"]
    )


# ---------------------------------------------------------------------------
# Streaming = brute force, chunk size does not matter
# ---------------------------------------------------------------------------
def write_unpaired(path, image, text):
    """An embeddings.h5 with different numbers of images and captions (caption j of image j mod N)."""
    from clipgeom.h5io import Embeddings, write_embeddings

    ni, nt = len(image), len(text)
    write_embeddings(
        path,
        Embeddings(
            image=np.asarray(image, np.float32),
            text=np.asarray(text, np.float32),
            image_id=np.arange(ni),
            image_file=np.asarray([""] * ni, dtype=object),
            text_id=np.arange(nt),
            text_image_index=np.arange(nt) % ni,
            caption=np.asarray([""] * nt, dtype=object),
            attrs={"model": "test"},
        ),
    )
    return path


@pytest.fixture
def small_pair(tmp_path):
    rng = np.random.default_rng(11)
    a = rng.normal(size=(300, 16)) @ rng.normal(size=(16, 16)) + 5.0
    b = rng.normal(size=(250, 16)) * 0.5 - 2.0
    path = write_unpaired(tmp_path / "embeddings.h5", a, b)
    return path, a.astype(np.float32).astype(float), b.astype(np.float32).astype(float)


def test_streaming_matches_brute_force(small_pair):
    path, a, b = small_pair
    for chunk in (7, 100000):
        ts = gs.compute_thin_shell(path, params("thin_shell", chunk_rows=chunk))
        cv = gs.compute_covariance(path, params("covariance", chunk_rows=chunk))
        od = gs.compute_origin_distance(path, params("origin_distance", chunk_rows=chunk))
        sp = gs.compute_separability(path, params("separability", chunk_rows=chunk, kl_bins=10))
        for mod, x in (("image", a), ("text", b)):
            xc = x - x.mean(0)
            cn = np.linalg.norm(xc, axis=1)
            assert ts.summary[mod]["mu_norm"] == pytest.approx(cn.mean(), rel=1e-10)
            assert ts.summary[mod]["var_y"] == pytest.approx(cn.var(ddof=1), rel=1e-8)
            # the paper's ddof = 1 (the schema default): sqrt(tr C) with C = cov(ddof=1)
            assert ts.summary[mod]["rms_norm"] == pytest.approx(math.sqrt(np.sum(cn**2) / (len(cn) - 1)), rel=1e-10)
            c = np.cov(x.T, bias=True)
            assert cv.columns[f"odd_{mod}"] == pytest.approx(
                [sum(abs(c[r, k]) for k in range(16) if k != r) / c[r, r] for r in range(16)], rel=1e-8
            )
            assert cv.summary[mod]["effective_rank"] == pytest.approx(g.effective_rank(np.linalg.eigvalsh(c)), rel=1e-8)
            nz = x[np.linalg.norm(x, axis=1) > 0]
            vh = nz / np.linalg.norm(nz, axis=1, keepdims=True)
            cos = vh @ vh.T
            n = len(vh)
            assert cv.details[mod]["mean_pairwise_cosine"] == pytest.approx((cos.sum() - n) / (n * (n - 1)), rel=1e-9)
            assert od.summary[mod]["median_origin_distance"] == pytest.approx(np.median(np.linalg.norm(x, axis=1)))
            # KL and histograms: numpy histogram on the pooled per-feature range
            f = 3
            lo, hi = min(a[:, f].min(), b[:, f].min()), max(a[:, f].max(), b[:, f].max())
            ha = np.histogram(a[:, f], bins=10, range=(lo, hi))[0]
            hb = np.histogram(b[:, f], bins=10, range=(lo, hi))[0]
            pa, pb = ha / ha.sum() + 1e-10, hb / hb.sum() + 1e-10
            pa, pb = pa / pa.sum(), pb / pb.sum()
            assert sp.columns["kl_image_text"][f] == pytest.approx(np.sum(pa * np.log(pa / pb)), rel=1e-9)
        # ROOT: mean of all normalised rows together
        both = np.r_[a, b]
        root = (both / np.linalg.norm(both, axis=1, keepdims=True)).mean(0)
        # EuCLIP's scaled cosine distance (1 - cos)/2 in [0, 1]
        cd_a = (1 - (a @ root) / (np.linalg.norm(a, axis=1) * np.linalg.norm(root))) / 2
        assert od.summary["image"]["median_root_cosine_distance"] == pytest.approx(np.median(cd_a), rel=1e-9)
        assert od.summary["image"]["frac_near_root"] == pytest.approx(np.mean(cd_a <= 0.5))
        assert od.details["text"]["zero_norm_rows"] == 0  # files never hold one (tests/test_faults_arrays.py)
        assert cv.summary["mean_angle_deg"] == pytest.approx(g.angle_deg(a.mean(0), b.mean(0)), rel=1e-9)


def test_too_few_rows_is_a_clear_error(write_h5):
    path = write_h5(np.ones((1, 4)), np.ones((1, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        gs.compute_thin_shell(path, params("thin_shell"))


# ---------------------------------------------------------------------------
# The 500 real CLIP pairs, every stage script end to end
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clip500_outputs(clip500_h5, tmp_path_factory):
    out = tmp_path_factory.mktemp("clip500_stages")
    metrics = {s: run_stage_script(s, make_job(s, clip500_h5, out)) for s in STAGES}
    return out, metrics


def test_clip500_all_outputs_written(clip500_outputs):
    out, metrics = clip500_outputs
    for stage in STAGES:
        m = metrics[stage]
        assert m["stage"] == stage and m["dataset"] == "coco500" and m["demo"] is False
        assert m["params"] == params(stage)
        for name in FIGURES[stage].values():
            png, pdf = out / stage / f"{name}.png", out / stage / f"{name}.pdf"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert pdf.read_bytes()[:5] == b"%PDF-"
        assert (out / stage / "values.csv").stat().st_size > 0
        assert "INFO" in (out / f"{stage}.log").read_text()


def test_clip500_summary_keys(clip500_outputs):
    _, m = clip500_outputs
    s = m["separability"]["summary"]
    assert {"svm_top2_accuracy", "top2_features", "n_tag_features", "kl_top_feature"} <= set(s)
    for mod in ("image", "text"):
        assert {"mu_norm", "var_y", "rms_norm", "rel_error"} <= set(m["thin_shell"]["summary"][mod])
        assert {"mean_to_std_ratio", "effective_rank"} <= set(m["covariance"]["summary"][mod])
        assert {"median_origin_distance", "median_root_cosine_distance", "frac_near_root"} <= set(
            m["origin_distance"]["summary"][mod]
        )
    assert "mean_angle_deg" in m["covariance"]["summary"]
    # every geometry key the paper reports resolves in these summaries (summary.json nesting)
    from clipgeom.paper import PAPER_VALUES
    from clipgeom.summary import flatten

    flat = flatten({st: m[st]["summary"] for st in STAGES})
    geo = [k for k in PAPER_VALUES if k.split(".")[0] in STAGES]
    assert len(geo) >= 10
    for k in geo:
        assert k in flat, k
        assert isinstance(flat[k], type(PAPER_VALUES[k])) or (
            isinstance(flat[k], (int, float)) and isinstance(PAPER_VALUES[k], (int, float))
        )


def test_clip500_separability(clip500, clip500_outputs):
    out, m = clip500_outputs
    img, txt = clip500.image.astype(float), clip500.text.astype(float)
    sep = np.abs(img.mean(0) - txt.mean(0)) / np.sqrt(img.var(0) + txt.var(0))
    s = m["separability"]["summary"]
    # the linear SVM separates image from text at 100%, with two features and with all
    assert s["svm_top2_accuracy"] == 1.0 and s["svm_all_accuracy"] == 1.0
    assert s["top2_features"] == np.argsort(-sep)[:2].tolist()
    assert s["n_tag_features"] == int(np.sum(sep > DEFAULTS["separability"]["tag_threshold"]))
    assert m["separability"]["svm"]["top2"]["min_fold_accuracy"] == 1.0
    csv = np.genfromtxt(out / "separability" / "values.csv", delimiter=",", names=True)
    assert len(csv) == 512
    assert csv["sep"] == pytest.approx(sep, rel=1e-9)


def test_clip500_thin_shell_covariance_origin(clip500, clip500_outputs):
    out, m = clip500_outputs
    root_parts = []
    for mod in ("image", "text"):
        x = getattr(clip500, mod).astype(float)
        xc = x - x.mean(0)
        cn = np.linalg.norm(xc, axis=1)
        ts = m["thin_shell"]["summary"][mod]
        assert ts["mu_norm"] == pytest.approx(cn.mean(), rel=1e-10)
        # thin_shell.ddof (default 1, the paper's): tr C with N - 1
        assert ts["rms_norm"] == pytest.approx(
            math.sqrt(np.trace(np.cov(x.T, ddof=DEFAULTS["thin_shell"]["ddof"]))), rel=1e-10
        )
        cs = m["covariance"]["summary"][mod]
        assert cs["mean_to_std_ratio"] == pytest.approx(np.linalg.norm(x.mean(0)) / np.linalg.norm(x.std(0)), rel=1e-9)
        vh = x / np.linalg.norm(x, axis=1, keepdims=True)
        cos = vh @ vh.T
        assert m["covariance"][mod]["mean_pairwise_cosine"] == pytest.approx((cos.sum() - 500) / (500 * 499), rel=1e-9)
        # N = 500 < d = 512: whitening flagged as degenerate
        assert m["covariance"][mod]["whitening"]["degenerate"] is True
        root_parts.append(vh)
    root = np.concatenate(root_parts).mean(0)
    for mod, vh in zip(("image", "text"), root_parts, strict=False):
        cd = (1 - vh @ root / np.linalg.norm(root)) / 2  # EuCLIP Fig. 2's scaled cosine distance in [0, 1]
        od = m["origin_distance"]["summary"][mod]
        assert od["median_root_cosine_distance"] == pytest.approx(np.median(cd), rel=1e-9)
        assert od["frac_near_root"] == pytest.approx(np.mean(cd <= 0.5))
        assert od["median_origin_distance"] == pytest.approx(1.0, abs=1e-5)  # the rows are unit-norm
    rows = np.genfromtxt(out / "thin_shell" / "values.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    assert len(rows) == 1000 and set(rows["modality"]) == {"image", "text"}


def test_script_runs_from_the_command_line(clip500_h5, tmp_path):
    # the by-hand path of clipgeom.scripting.get_job (argparse), as documented there
    job = make_job("origin_distance", clip500_h5, tmp_path)
    outs = [f"{k}={v}" for k, v in vars(job.output).items()]
    cmd = [
        sys.executable,
        str(REPO / "workflow" / "scripts" / "origin_distance.py"),
        "--input",
        f"embeddings={clip500_h5}",
        "--output",
        *outs,
        "--params",
        json.dumps({"p": params("origin_distance"), "demo": True}),
        "--wildcards",
        "dataset=x",
        "model=y",
        "--log",
        str(tmp_path / "od.log"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, cwd=REPO)
    m = json.loads(Path(job.output.metrics).read_text())
    assert m["demo"] is True and "note" in m and m["dataset"] == "x"


def test_stage_schemas_have_defaults_and_descriptions():
    import yaml

    for stage in STAGES:
        sch = yaml.safe_load((REPO / "config" / "schema" / "stages" / f"{stage}.schema.yaml").read_text())
        assert sch["type"] == "object"
        for name, prop in sch["properties"].items():
            assert {"type", "default", "description"} <= set(prop), (stage, name)
