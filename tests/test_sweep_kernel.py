"""The fused CPU kernel of the alpha sweep (clipgeom.sweep_kernel) and thread confinement (clipgeom.threads).

The kernel is checked against the float64 per-alpha recomputation (clipgeom.loss.direct_pair_terms) and
against the torch ops it replaces; its exp against numpy's float64 exp.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from clipgeom import loss as L
from clipgeom import sweep as S
from clipgeom import sweep_kernel as K

pytestmark = pytest.mark.skipif(not K.AVAILABLE, reason="numba not importable")


def _pairs(n, d, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    x = (rng.normal(size=d) + z + spread * rng.normal(size=(n, d))).astype(np.float32)
    y = (rng.normal(size=d) + z + spread * rng.normal(size=(n, d))).astype(np.float32)
    return x, y, {"image": x.mean(0, dtype=np.float64), "text": y.mean(0, dtype=np.float64)}


def test_exp_matches_float64_exp():
    x = np.concatenate(
        [np.linspace(-80.0, 0.0, 200_001, dtype=np.float32), np.float32([-79.99, -1e-30, -0.0, -87.0, -200.0])]
    )
    out = np.empty_like(x)
    ref = np.exp(np.maximum(x.astype(np.float64), K.EXP_FLOOR))

    @K.njit
    def run(x, out):
        for k in range(x.shape[0]):
            out[k] = K._exp(x[k])

    run(x, out)
    rel = np.abs(out - ref) / ref
    assert rel.max() < 5e-7, rel.max()
    assert out[-1] == pytest.approx(np.exp(-80.0), rel=1e-6)  # clamped at the floor, not zero or denormal


@pytest.mark.parametrize("geometry", L.GEOMETRIES)
@pytest.mark.parametrize("two_exp", [True, False])
def test_fused_matches_direct_and_torch(geometry, two_exp):
    x, y, means = _pairs(257, 24, seed=3)  # 257 rows: blocks of 64 leave a remainder, chunks split unevenly
    alphas = np.round(np.linspace(-1, 1, 7), 10)
    scale = 30.0 if geometry == "cosine" else 2.0
    kw = dict(scale=scale, means=means, geometries=(geometry,), row_block=64, threads=2, two_exp=two_exp)
    fused = S.sweep_pair_terms(x, y, alphas, kernel="fused", **kw)
    torch_ = S.sweep_pair_terms(x, y, alphas, kernel="torch", **kw)
    for shift in L.SHIFTS:
        got, tt = fused[(geometry, shift)], torch_[(geometry, shift)]
        assert got.info["kernel"] == "fused" and tt.info["kernel"] == "torch"
        ref = L.direct_pair_terms(x, y, alphas, scale=scale, mean=means[shift], geometry=geometry, shift=shift)
        for name in ("diag", "row_lse", "col_lse"):
            mag = max(1.0, float(np.abs(getattr(ref, name)).max()))
            np.testing.assert_allclose(
                getattr(got, name), getattr(ref, name), rtol=0, atol=2e-6 * mag, err_msg=f"{geometry}/{shift}/{name}"
            )
            np.testing.assert_allclose(getattr(got, name), getattr(tt, name), rtol=0, atol=2e-6 * mag)
        np.testing.assert_array_equal(got.i2t, ref.i2t)
        np.testing.assert_array_equal(got.t2i, ref.t2i)
        assert got.info["fallback_columns"] == tt.info["fallback_columns"]


def test_fused_wide_range_flags_the_same_columns_and_stays_exact():
    """Euclidean logits at a large scale spread beyond float32's exponent range: with one exp per element
    the columns that lost terms are recomputed (the same ones as the torch path flags), with two exps
    nothing needs recomputing; both agree with the float64 reference."""
    x, y, means = _pairs(200, 16, seed=5, spread=3.0)
    alphas = np.array([-0.5, 0.0, 0.5])
    for two in (False, True):
        kw = dict(scale=40.0, means=means, geometries=("euclidean",), row_block=48, threads=2, two_exp=two)
        got = S.sweep_pair_terms(x, y, alphas, kernel="fused", **kw)[("euclidean", "image")]
        tt = S.sweep_pair_terms(x, y, alphas, kernel="torch", **kw)[("euclidean", "image")]
        ref = L.direct_pair_terms(x, y, alphas, scale=40.0, mean=means["image"], geometry="euclidean", shift="image")
        if not two:
            assert got.info["fallback_columns"] > 0
        assert got.info["fallback_columns"] == tt.info["fallback_columns"]
        mag = float(np.abs(ref.col_lse).max())
        np.testing.assert_allclose(got.col_lse, ref.col_lse, rtol=0, atol=1e-6 * mag)
        np.testing.assert_allclose(got.row_lse, ref.row_lse, rtol=0, atol=1e-6 * mag)


def test_thread_count_changes_only_rounding():
    x, y, means = _pairs(2100, 16, seed=7)  # above SERIAL_BELOW, so threads are used
    alphas = np.array([-0.3, 0.0, 0.4])
    one = S.sweep_pair_terms(x, y, alphas, scale=50.0, means=means, geometries=L.GEOMETRIES, threads=1)
    two = S.sweep_pair_terms(x, y, alphas, scale=50.0, means=means, geometries=L.GEOMETRIES, threads=2)
    again = S.sweep_pair_terms(x, y, alphas, scale=50.0, means=means, geometries=L.GEOMETRIES, threads=2)
    for k in one:
        np.testing.assert_array_equal(two[k].col_lse, again[k].col_lse)  # deterministic for a thread count
        np.testing.assert_array_equal(one[k].row_lse, two[k].row_lse)  # rows never split across threads
        np.testing.assert_allclose(one[k].col_lse, two[k].col_lse, rtol=0, atol=1e-9 * np.abs(one[k].col_lse).max())
        np.testing.assert_array_equal(one[k].t2i, two[k].t2i)


def test_kernel_option_is_checked():
    x, y, means = _pairs(10, 4, seed=0)
    with pytest.raises(ValueError, match="kernel must be"):
        S.sweep_pair_terms(x, y, [0.0], scale=1.0, means=means, kernel="gpu")
    with pytest.raises(ValueError, match="float32"):
        S.sweep_pair_terms(x, y, [0.0], scale=1.0, means=means, kernel="fused", dtype="float64")
    got = S.sweep_pair_terms(x, y, [0.0], scale=1.0, means=means, dtype="float64")  # auto: the torch path
    assert got[("cosine", "image")].info["kernel"] == "torch"


_PROBE = """
import json, os, sys
sys.modules["__main__"].snakemake = type("Job", (), {"threads": %d})()
import clipgeom  # confines at import, before numpy/torch/numba load
import numpy, torch, numba
from threadpoolctl import threadpool_info
from clipgeom import sweep  # noqa: F401  (loads numba's kernel module)
print(json.dumps({"env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                  "NUMBA_NUM_THREADS", "OMP_WAIT_POLICY")},
                  "torch": torch.get_num_threads(), "numba": numba.config.NUMBA_NUM_THREADS,
                  "blas": sorted({p["num_threads"] for p in threadpool_info()})}))
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_snakemake_job_is_confined_to_its_threads(threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE % threads], env=env, capture_output=True, text=True, check=True
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["env"] == {
        "OMP_NUM_THREADS": str(threads),
        "OPENBLAS_NUM_THREADS": str(threads),
        "NUMBA_NUM_THREADS": str(threads),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    assert got["torch"] == threads and got["numba"] == threads
    assert got["blas"] == [threads]


def test_user_wait_policy_is_kept():
    env = dict(os.environ, OMP_WAIT_POLICY="ACTIVE")
    out = subprocess.run([sys.executable, "-c", _PROBE % 1], env=env, capture_output=True, text=True, check=True).stdout
    assert json.loads(out.strip().splitlines()[-1])["env"]["OMP_WAIT_POLICY"] == "ACTIVE"
