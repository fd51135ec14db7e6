"""The fused CPU kernel of the alpha sweep (paper Eqs. 7-9): one row block, every alpha, in one pass.

:func:`clipgeom.sweep.sweep_pair_terms` reduces every (geometry, shifted modality, alpha) to the same
shape of work: a row block's base matrix ``B`` (one float64 product ``X_b Y^T``, rounded once to
float32) and O(M) vectors give the logits

    S[j, k] = (B[j, k] + ra[j] + ca[k]) * rm[j] * cm[k]            (cosine, squared Euclidean)
    S[j, k] = post * sqrt(max((B[j, k] + ra[j] + ca[k]) * rm[j] * cm[k], 0))      (Euclidean)

and from ``S`` the sweep needs, per row, the row maximum, the diagonal and ``log sum_k exp S[j, k]``,
and, per column, ``sum_j exp S[j, k]`` (in a float64 frame) and the column maximum. Written with torch,
each of these is a separate pass over the block (add, multiply, two maxima, subtract, clamp, exp, sum,
matrix-vector product: ~9 passes and ~15 calls per alpha). Here one compiled loop does them together,
row by row with the row in L1/L2 cache, using an ``exp`` that the compiler vectorises (:func:`_exp`:
Cody-Waite range reduction and Cephes' degree-6 polynomial, relative error below 3e-7, the exponent
added in the integer representation). Rows are split into one contiguous chunk per thread, each with its
own column accumulators (merged in a fixed order, so a result depends on the thread count only through
float64 summation order).

Two ways to form the column sums, as in the torch path:

* one-exp (cosine by default): ``e = exp(S - row max)`` serves the row sum and, weighted by
  ``exp(row max - F)``, the column sums in a running float64 frame ``F`` (the largest row maximum seen);
  columns that may have lost terms to float32 underflow are flagged and recomputed exactly by the caller;
* two-exp (Euclidean by default): a second ``exp(S - column max of the chunk)`` per element, merged into
  one float64 frame per column: exact for any logit range.

Arguments below are numpy views of the caller's torch tensors (CPU, float32 logits, float64 sums); the
kernel writes into them in place.
"""

from __future__ import annotations

import math

import numpy as np

_LOW = -1.0e300  # "no frame yet" (finite, so that fast-math code may compare with it)
EXP_FLOOR = -80.0  # exp arguments are clamped here (as in the torch path): no denormals, bounded loss

try:  # numba is a dependency; without it the caller falls back to the torch path
    import numba
    from numba import njit
except ImportError:  # pragma: no cover - exercised only where numba is missing
    numba = None

AVAILABLE = numba is not None

if AVAILABLE:
    from llvmlite import ir
    from numba import types
    from numba.extending import intrinsic

    @intrinsic
    def _as_float32(typingctx, bits):
        """Reinterpret an int32's bits as a float32 (an LLVM bitcast: free, and vectorisable)."""
        sig = types.float32(types.int32)

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())

        return sig, codegen

    @njit(fastmath=True, cache=True)
    def _exp(x):
        """float32 ``exp(max(x, EXP_FLOOR))`` for ``x <= 0``: Cody-Waite reduction ``x = t ln2 + r``,
        Cephes' degree-6 polynomial for ``exp(r)`` (relative error < 3e-7) and ``2**t`` built from its bits."""
        x = max(x, np.float32(EXP_FLOOR))
        t = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
        r = x - t * np.float32(0.693359375)
        r = r - t * np.float32(-2.12194440e-4)
        p = np.float32(1.9875691500e-4)
        p = p * r + np.float32(1.3981999507e-3)
        p = p * r + np.float32(8.3334519073e-3)
        p = p * r + np.float32(4.1665795894e-2)
        p = p * r + np.float32(1.6666665459e-1)
        p = p * r + np.float32(5.0000001201e-1)
        p = p * r * r + r + np.float32(1.0)
        return p * _as_float32((np.int32(t) + np.int32(127)) << 23)

    @njit(fastmath=True, cache=True)
    def _row(base, jj, ra_j, ca, rm_j, cm, euc, post, buf, n):
        """Logits of one row into ``buf``; returns the row maximum (finite inputs: fast-math safe)."""
        m = np.float32(-3.0e38)
        if euc:
            for k in range(n):
                v = post * np.sqrt(max((base[jj, k] + ra_j + ca[k]) * rm_j * cm[k], np.float32(0.0)))
                buf[k] = v
                m = max(m, v)
        else:
            for k in range(n):
                v = (base[jj, k] + ra_j + ca[k]) * rm_j * cm[k]
                buf[k] = v
                m = max(m, v)
        return m

    @njit(fastmath=True, cache=True)
    def _row_cm(base, jj, ra_j, ca, rm_j, cm, euc, post, buf, n, cmx, add):
        """:func:`_row`, and ``cmx = max(cmx, row + add)`` (running column maxima) in the same loop."""
        m = np.float32(-3.0e38)
        if euc:
            for k in range(n):
                v = post * np.sqrt(max((base[jj, k] + ra_j + ca[k]) * rm_j * cm[k], np.float32(0.0)))
                buf[k] = v
                m = max(m, v)
                cmx[k] = max(cmx[k], v + add)
        else:
            for k in range(n):
                v = (base[jj, k] + ra_j + ca[k]) * rm_j * cm[k]
                buf[k] = v
                m = max(m, v)
                cmx[k] = max(cmx[k], v + add)
        return m

    @njit(fastmath=True, cache=True)
    def _exp_rows_cols(buf, mu, cs, w, n):
        """One-exp: ``e = exp(buf - mu)``; returns ``sum e`` (float64) and adds ``w * e`` to ``cs``."""
        s = 0.0
        for k in range(n):
            e = np.float64(_exp(buf[k] - mu))
            s += e
            cs[k] += e * w
        return s

    @njit(fastmath=True, cache=True)
    def _exp_rows_two(buf, mu, add, cb, bs, n):
        """Two-exp: returns ``sum exp(buf - mu)`` (float64) and adds ``exp(buf + add - cb)`` to ``bs``
        (float32: a chunk of one row block sums at most a few hundred terms <= 1, then float64 merges)."""
        s = 0.0
        for k in range(n):
            v = buf[k]
            s += np.float64(_exp(v - mu))
            bs[k] += _exp((v + add) - cb[k])
        return s

    _FM = {"nsz", "arcp", "contract", "afn", "reassoc"}  # fast math without assuming no inf/NaN

    @njit(nogil=True, cache=True, fastmath=_FM)
    def chunk_one_exp(
        base, lo, hi, j0, ra, ca, rm, cm, ra64, sep_row, euc, post, need_colmax, diag, row_lse, i2t, dcmp, cs, fr, cmx
    ):
        """Rows ``lo .. hi`` of one row block (absolute rows ``j0 + lo ..``), every alpha, one exp per element.

        ``ra, ca, rm, cm``: (A, M) float32 (rows indexed by absolute row). With ``sep_row`` (squared
        Euclidean: ``S = U + ra[j]``) the row term is left out of the float32 row ``U``, and the row
        maximum and diagonal get it in float64 from ``ra64`` (row-constant terms do not change
        ``exp(S - row max)``); column maxima use ``U + ra`` in float32. Writes ``diag, row_lse`` (A, M)
        float64, ``i2t`` (A, M) bool and ``dcmp`` (A, M) float32 (the diagonal in the column maxima's
        arithmetic) for its rows, and this chunk's own accumulators: column sums ``cs`` (A, M) float64 in
        the frame ``fr`` (A,) float64 (the largest row maximum seen) and column maxima ``cmx`` (A, M).
        """
        n = base.shape[1]
        n_alpha = ca.shape[0]
        buf = np.empty(n, np.float32)
        for a in range(n_alpha):
            caa, cma, csa, cmxa = ca[a], cm[a], cs[a], cmx[a]
            f = fr[a]
            for jj in range(lo, hi):
                j = j0 + jj
                ra_j = np.float32(0.0) if sep_row else ra[a, j]
                r32 = ra[a, j] if sep_row else np.float32(0.0)
                if need_colmax:
                    mu = _row_cm(base, jj, ra_j, caa, rm[a, j], cma, euc, post, buf, n, cmxa, r32)
                else:
                    mu = _row(base, jj, ra_j, caa, rm[a, j], cma, euc, post, buf, n)
                du = buf[j]
                i2t[a, j] = du >= mu
                off = ra64[a, j] if sep_row else 0.0
                m = np.float64(mu) + off
                diag[a, j] = np.float64(du) + off
                if need_colmax:
                    dcmp[a, j] = du + r32
                if m > f:
                    sc = math.exp(f - m)
                    for k in range(n):
                        csa[k] *= sc
                    f = m
                row_lse[a, j] = m + math.log(_exp_rows_cols(buf, mu, csa, math.exp(m - f), n))
            fr[a] = f

    @njit(nogil=True, cache=True, fastmath=_FM)
    def chunk_two_exp(
        base, lo, hi, j0, ra, ca, rm, cm, ra64, sep_row, euc, post, need_colmax, diag, row_lse, i2t, dcmp, cs, fr, cmx
    ):
        """As :func:`chunk_one_exp`, but the column sums ``cs`` are taken in this chunk's column maxima
        ``cmx`` (a second exp per element, ``exp(S - column max)``): exact for any logit range. ``fr`` is
        unused (the frame of column k is ``cmx[a, k]``)."""
        n = base.shape[1]
        n_alpha = ca.shape[0]
        rows = np.empty((max(hi - lo, 1), n), np.float32)  # the chunk's logits, kept for phase B
        rmax = np.empty(max(hi - lo, 1), np.float32)
        bs = np.empty(n, np.float32)
        for a in range(n_alpha):
            caa, cma, cb, csa = ca[a], cm[a], cmx[a], cs[a]
            for k in range(n):
                bs[k] = 0.0
                csa[k] = 0.0
            for jj in range(lo, hi):  # phase A: row maxima, diagonal, the chunk's column maxima
                j = j0 + jj
                ra_j = np.float32(0.0) if sep_row else ra[a, j]
                r32 = ra[a, j] if sep_row else np.float32(0.0)
                buf = rows[jj - lo]
                mu = _row_cm(base, jj, ra_j, caa, rm[a, j], cma, euc, post, buf, n, cb, r32)
                rmax[jj - lo] = mu
                du = buf[j]
                i2t[a, j] = du >= mu
                off = ra64[a, j] if sep_row else 0.0
                diag[a, j] = np.float64(du) + off
                if need_colmax:
                    dcmp[a, j] = du + r32
            for jj in range(lo, hi):  # phase B: both exps
                j = j0 + jj
                ra_j = np.float32(0.0) if sep_row else ra[a, j]
                r32 = ra[a, j] if sep_row else np.float32(0.0)
                mu = rmax[jj - lo]
                off = ra64[a, j] if sep_row else 0.0
                row_lse[a, j] = np.float64(mu) + off + math.log(_exp_rows_two(rows[jj - lo], mu, r32, cb, bs, n))
                if (jj - lo) % 256 == 255 or jj == hi - 1:  # float32 partial sums of <= 256 terms
                    for k in range(n):
                        csa[k] += bs[k]
                        bs[k] = 0.0

    @njit(cache=True)
    def merge_one_exp(colsum, frame, colmax, cs_t, fr_t, cm_t, need_colmax):
        """Fold the chunks' accumulators (in chunk order) into the block's running ``colsum`` (A, M) in
        the frame ``frame`` (A,) and ``colmax`` (A, M)."""
        T, n_alpha, n = cs_t.shape
        for a in range(n_alpha):
            for t in range(T):
                f1 = fr_t[t, a]
                if f1 <= _LOW:
                    continue
                new = max(frame[a], f1)
                s0, s1 = math.exp(frame[a] - new), math.exp(f1 - new)
                for k in range(n):
                    colsum[a, k] = colsum[a, k] * s0 + cs_t[t, a, k] * s1
                frame[a] = new
                if need_colmax:
                    for k in range(n):
                        colmax[a, k] = max(colmax[a, k], cm_t[t, a, k])

    @njit(cache=True)
    def merge_two_exp(colsum, frame, colmax, cs_t, cm_t, need_colmax, rows_t):
        """Fold the chunks' column sums (each in its own column maxima) into per-column float64 frames
        ``frame`` (A, M) by an online log-sum-exp; column maxima into ``colmax``."""
        T, n_alpha, n = cs_t.shape
        for a in range(n_alpha):
            for t in range(T):
                if rows_t[t] == 0:
                    continue
                for k in range(n):
                    f0, f1 = frame[a, k], np.float64(cm_t[t, a, k])
                    new = max(f0, f1)
                    colsum[a, k] = colsum[a, k] * math.exp(f0 - new) + cs_t[t, a, k] * math.exp(f1 - new)
                    frame[a, k] = new
                    if need_colmax:
                        colmax[a, k] = max(colmax[a, k], cm_t[t, a, k])


_POOL = {}


def _pool(n_threads: int):
    """A persistent thread pool (the kernels release the GIL, so chunks run in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    if n_threads not in _POOL:
        _POOL[n_threads] = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="clipgeom-sweep")
    return _POOL[n_threads]


def run_block(kind, base, j0, vecs, post, two_exp, need_colmax, threads, acc):
    """One row block, every alpha: its rows split into ``threads`` contiguous chunks run in parallel, then
    merged in chunk order. ``kind``: the spec's kind (``cos_image``, ``cos_text``, ``sq``, ``euc``);
    ``vecs``: float32 (A, M) arrays ``ra, ca, rm, cm`` and float64 ``ra64``; ``acc``: numpy views ``diag,
    row_lse, i2t, colsum, frame, colmax, dcmp`` (colmax/dcmp: any float32 2-d array when unused)."""
    b, n = base.shape
    n_alpha = vecs["ca"].shape[0]
    T = max(1, min(int(threads), b))
    cs_t = np.zeros((T, n_alpha, n))
    fr_t = np.full((T, n_alpha), _LOW)
    cm_t = np.full((T, n_alpha, n), -3.0e38, np.float32)
    dcmp = acc["dcmp"]
    bounds = [(t * b // T, (t + 1) * b // T) for t in range(T)]
    fn = chunk_two_exp if two_exp else chunk_one_exp

    def work(t):
        lo, hi = bounds[t]
        fn(
            base,
            lo,
            hi,
            int(j0),
            vecs["ra"],
            vecs["ca"],
            vecs["rm"],
            vecs["cm"],
            vecs["ra64"],
            kind == "sq",
            kind == "euc",
            np.float32(post),
            bool(need_colmax),
            acc["diag"],
            acc["row_lse"],
            acc["i2t"],
            dcmp,
            cs_t[t],
            fr_t[t],
            cm_t[t],
        )

    if T == 1:
        work(0)
    else:
        futures = [_pool(T).submit(work, t) for t in range(1, T)]
        work(0)
        for f in futures:
            f.result()
    if two_exp:
        merge_two_exp(
            acc["colsum"],
            acc["frame"],
            acc["colmax"],
            cs_t,
            cm_t,
            bool(need_colmax),
            np.array([hi - lo for lo, hi in bounds], np.int64),
        )
    else:
        merge_one_exp(acc["colsum"], acc["frame"], acc["colmax"], cs_t, fr_t, cm_t, bool(need_colmax))
