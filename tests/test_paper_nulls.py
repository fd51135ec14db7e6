"""Null baselines of the off-diagonal dominance (Eq. 6) and EuCLIP's scaled [ROOT] distance (issue 11)."""

import math
import time

import numpy as np
import pytest

from clipgeom import geometry as g


def test_odd_null_diagonal_gaussian_is_null():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2000, 64)) * np.linspace(0.5, 2.0, 64)
    nl = g.odd_null_medians(x, 9, seed=3)
    s = g.odd_null_summary(nl["observed"], nl["permutation"], nl["gaussian"])
    assert s["odd_median_ratio_to_null"] == pytest.approx(1.0, abs=0.15)
    assert s["odd_p_value"] > 0.05
    assert nl["observed"] > 1.0  # sampling noise alone gives ODD >= 1 (why a null is needed)


def test_odd_null_correlated_planted():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((2000, 1))
    x = 0.8 * z + 0.6 * rng.standard_normal((2000, 64))  # every pair correlated 0.64
    reps = 9
    nl = g.odd_null_medians(x, reps, seed=0)
    s = g.odd_null_summary(nl["observed"], nl["permutation"], nl["gaussian"])
    assert s["odd_median_ratio_to_null"] > 5
    assert s["odd_p_value"] == pytest.approx(1 / (1 + reps))


def test_odd_null_clip500(clip500):
    for mod in ("image", "text"):
        x = getattr(clip500, mod).astype(float)
        t0 = time.perf_counter()
        nl = g.odd_null_medians(x, 5, seed=0)
        print(mod, "null time N=500", time.perf_counter() - t0)
        s = g.odd_null_summary(nl["observed"], nl["permutation"], nl["gaussian"])
        print(mod, s)
        assert s["odd_median_ratio_to_null"] > 1
        assert s["odd_p_value"] == pytest.approx(1 / 6)


def test_scaled_root_distance_hand():
    root = g.root_vector([1.0, 0.0], 1, [0.0, 1.0], 1)
    cd = g.scaled_cosine_distance(np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, -1.0], [1.0, 1.0]]), root)
    assert cd == pytest.approx([(1 - 1 / math.sqrt(2)) / 2, (1 - 1 / math.sqrt(2)) / 2, 1.0, 0.0])


def test_ks_heldout_calibrated_gaussian_and_heavy_tail():
    pv = []
    for seed in range(7):
        x = np.random.default_rng(seed).standard_normal((2000, 16)) * np.arange(1, 17)
        pv.append(g.ks_chi_heldout(x, seed)[1])
    assert np.median(pv) > 0.2
    t = np.random.default_rng(9).standard_t(3, size=(2000, 16))
    assert g.ks_chi_heldout(t, 0)[1] < 1e-6


def test_null_timing_n5000_d512():
    x = np.random.default_rng(0).standard_normal((5000, 512))
    t0 = time.perf_counter()
    g.odd_null_medians(x, 1, seed=0)
    print("one rep of both nulls at N=5000, d=512:", time.perf_counter() - t0)


def test_eq7_is_alignment_loss_plus_uniformity_brute_force():
    from clipgeom import loss as L

    rng = np.random.default_rng(4)
    xi, xt = rng.standard_normal((9, 5)), rng.standard_normal((9, 5))
    tau = 0.1
    vi = xi / np.linalg.norm(xi, axis=1, keepdims=True)
    vt = xt / np.linalg.norm(xt, axis=1, keepdims=True)
    s = vi @ vt.T / tau
    brute = np.mean(
        [
            -0.5
            * (
                math.log(math.exp(s[j, j]) / sum(math.exp(s[k, j]) for k in range(9)))
                + math.log(math.exp(s[j, j]) / sum(math.exp(s[j, k]) for k in range(9)))
            )
            for j in range(9)
        ]
    )
    a, u = L.alignment_uniformity(s)
    assert -a + u == pytest.approx(brute, rel=1e-12)
    t = L.direct_pair_terms(xi, xt, np.array([0.0]), scale=1 / tau, mean=np.zeros(5), geometry="cosine", shift="image")
    assert t.alignment == pytest.approx(np.diag(s)[None, :])
    assert (t.alignment_loss + t.uniformity).mean() == pytest.approx(brute, rel=1e-12)
    assert t.loss.mean() == pytest.approx(brute, rel=1e-12)
