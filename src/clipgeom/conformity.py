"""Conformity (paper §6, Eqs. 9–11; Figs. 8–11, 13).

Conformity of a vector v_j within a set S of N vectors (Eq. 10) is its mean
cosine similarity to all *other* members::

    C(v_j) = 1/(N-1) · Σ_{k≠j} cos(v_j, v_k)

With unit vectors v̂ and their sum s = Σ_k v̂_k this is exactly::

    C(v_j) = v̂_j · (s − v̂_j) / (N − 1) = (v̂_j · s − ‖v̂_j‖²) / (N − 1)

so the whole set costs O(N·d) instead of O(N²·d).  The same identity measures
a set A against a different reference set B (:func:`conformity_against`):
C_B(a) = â · s_B / N_B.

Every function works in float64 and accepts either an array or a *chunk
source*: a zero-argument callable returning a fresh iterator of row blocks
(e.g. ``lambda: h5io.iter_embedding_chunks(path, "text", 16384)``).  Every
computation is two passes over such a source (sum, then per-chunk values), so
memory stays bounded by one chunk plus O(N) output.

The histograms and the KL divergence of Figs. 10–11 are :mod:`clipgeom.kl`'s (the estimator the
separability stage uses too); the α grid of Fig. 11 is :func:`clipgeom.grids.alpha_grid`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from clipgeom.kl import sample_histogram_kl

ChunkSource = Callable[[], Iterable[np.ndarray]]

#: rows per block when an in-memory array is processed block-wise
DEFAULT_CHUNK_ROWS = 16384


# ---------------------------------------------------------------------------
# chunk sources
# ---------------------------------------------------------------------------
def array_chunks(x: np.ndarray, chunk_rows: int = DEFAULT_CHUNK_ROWS, reuse_buffer: bool = False) -> ChunkSource:
    """A chunk source over an in-memory 2-D array (float64 blocks of ``chunk_rows`` rows).

    float64 input is yielded as views (no copy).  Other dtypes are converted block by block;
    with ``reuse_buffer`` every block is written into one preallocated float64 buffer, so a
    block is only valid until the next one is requested (the functions here never keep one).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of row vectors, got shape {x.shape}")
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")

    def _iter() -> Iterator[np.ndarray]:
        buf = None
        if reuse_buffer and x.dtype != np.float64 and x.shape[0]:
            buf = np.empty((min(chunk_rows, x.shape[0]), x.shape[1]), dtype=np.float64)
        for start in range(0, x.shape[0], chunk_rows):
            block = x[start : start + chunk_rows]
            if buf is None:
                yield np.asarray(block, dtype=np.float64)
            else:
                out = buf[: block.shape[0]]
                np.copyto(out, block)
                yield out

    return _iter


def _source(x, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ChunkSource:
    return x if callable(x) else array_chunks(x, chunk_rows, reuse_buffer=True)


# ---------------------------------------------------------------------------
# unit vectors and sums
# ---------------------------------------------------------------------------
def row_norms(x: np.ndarray, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(‖v_j‖, ‖v_j‖²) of every row, float64; a zero or non-finite norm raises ``ValueError``
    naming the row (``row_offset`` is added, so a chunk reports its row in the whole file)."""
    sq = np.einsum("ij,ij->i", x, x)
    norms = np.sqrt(sq)
    bad = ~(norms > 0) | ~np.isfinite(norms)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + row_offset
        raise ValueError(f"row {row} has zero or non-finite norm; its cosine similarity is undefined")
    return norms, sq


def unit_rows(x: np.ndarray, row_offset: int = 0) -> np.ndarray:
    """Rows scaled to unit L2 norm, float64 (v̂ = v / ‖v‖); a zero row raises naming it."""
    x = np.asarray(x, dtype=np.float64)
    return x / row_norms(x, row_offset)[0][:, None]


@dataclass
class SetSums:
    """First-pass statistics of a set: Σ v̂_k, Σ v_k and N."""

    unit_sum: np.ndarray
    raw_sum: np.ndarray
    n: int

    @property
    def mean(self) -> np.ndarray:
        """m, the raw mean of the set (Eq. 11 uses it)."""
        return self.raw_sum / self.n

    @property
    def unit_mean(self) -> np.ndarray:
        """The mean of the unit vectors, ū = s / N."""
        return self.unit_sum / self.n


def set_sums(x, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> SetSums:
    """One pass: unit-vector sum s = Σ_k v_k/‖v_k‖, raw sum Σ_k v_k and the row count.

    Both sums come from one product V_chunkᵀ·[1/‖v‖, 1] per chunk; the unit vectors are never formed.
    """
    sums = None
    n = 0
    for chunk in _source(x, chunk_rows)():
        chunk = np.asarray(chunk, dtype=np.float64)
        norms, _ = row_norms(chunk, n)
        weights = np.empty((chunk.shape[0], 2))
        weights[:, 0] = 1.0 / norms
        weights[:, 1] = 1.0
        part = chunk.T @ weights
        sums = part if sums is None else sums + part
        n += chunk.shape[0]
    if sums is None:
        raise ValueError("empty set: no rows to sum")
    return SetSums(unit_sum=sums[:, 0].copy(), raw_sum=sums[:, 1].copy(), n=n)


# ---------------------------------------------------------------------------
# Eq. 10: exact conformity
# ---------------------------------------------------------------------------
def conformity(x, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Eq. 10, exact conformity of every row within its own set, O(N·d).

    C(v_j) = E_{k≠j}[cos(v_j, v_k)] = v̂_j · (Σ_k v̂_k − v̂_j) / (N − 1).
    ``x``: an (N, d) array or a chunk source (two passes over it).
    """
    return conformity_and_cosine(x, chunk_rows)[0]


def conformity_and_cosine(x, chunk_rows: int = DEFAULT_CHUNK_ROWS):
    """Eq. 10 and cos(m, v_j) in two passes: returns ``(C, cos_to_mean, SetSums)``.

    Pass 1: s = Σ_k v̂_k and m (:func:`set_sums`).  Pass 2, per chunk, one product
    V·[s, m]: v̂_j·s = (v_j·s)/‖v_j‖ and cos(m, v_j) = (v_j·m)/(‖v_j‖‖m‖); the self
    term v̂_j·v̂_j = ‖v_j‖²/‖v_j‖² (1 up to rounding) is subtracted.  ``m`` is the raw
    mean of the set (Eq. 11's regressor).
    """
    src = _source(x, chunk_rows)
    sums = set_sums(src)
    if sums.n < 2:
        raise ValueError(f"conformity needs at least 2 vectors in the set, got {sums.n}")
    m = sums.mean
    m_norm = float(np.linalg.norm(m))
    if not m_norm > 0:
        raise ValueError("the set's mean vector is zero; cos(m, v) is undefined")
    both = np.column_stack([sums.unit_sum, m])
    conf, cos_m = np.empty(sums.n), np.empty(sums.n)
    start = 0
    for chunk in src():
        chunk = np.asarray(chunk, dtype=np.float64)
        stop = start + chunk.shape[0]
        if stop > sums.n:
            raise ValueError(f"the chunk source changed between passes (more than {sums.n} rows)")
        norms, sq = row_norms(chunk, start)
        dots = chunk @ both
        conf[start:stop] = (dots[:, 0] / norms - sq / (norms * norms)) / (sums.n - 1)
        cos_m[start:stop] = dots[:, 1] / (norms * m_norm)
        start = stop
    if start != sums.n:
        raise ValueError(f"the chunk source changed between passes ({sums.n} then {start} rows)")
    return conf, cos_m, sums


def conformity_against(x, reference: SetSums, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Eq. 10 measured against a *different* reference set B (x is not part of B).

    C_B(a) = E_{k∈B}[cos(a, b_k)] = â · s_B / N_B, with s_B = Σ_{k∈B} b̂_k (``reference.unit_sum``).
    Used to score external sets (generated images or captions) against a dataset (Fig. 13).
    """
    out = []
    start = 0
    for chunk in _source(x, chunk_rows)():
        chunk = np.asarray(chunk, dtype=np.float64)
        norms, _ = row_norms(chunk, start)
        out.append((chunk @ reference.unit_sum) / (norms * reference.n))
        start += chunk.shape[0]
    return np.concatenate(out) if out else np.zeros(0)


def cross_conformity(a, b, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> np.ndarray:
    """Conformity of every row of set A measured w.r.t. set B (Eq. 10 with the mean over B)."""
    return conformity_against(a, set_sums(b, chunk_rows), chunk_rows)


# ---------------------------------------------------------------------------
# Eq. 11: estimated conformity
# ---------------------------------------------------------------------------
def cosine_to(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """cos(m, v_j) for every row v_j of ``x``."""
    m = np.asarray(m, dtype=np.float64)
    return unit_rows(x) @ (m / np.linalg.norm(m))


@dataclass
class ConformityFit:
    """Eq. 11 coefficients: Ĉ = a·cos(m, v) + b, and Pearson r between C and cos(m, v)."""

    a: float
    b: float
    pearson: float

    def predict(self, cos_m: np.ndarray) -> np.ndarray:
        return estimated_conformity(cos_m, self.a, self.b)


def estimated_conformity(cos_m: np.ndarray, a: float, b: float) -> np.ndarray:
    """Eq. 11: Ĉ(v_j) = a·cos(m, v_j) + b."""
    return a * np.asarray(cos_m, dtype=np.float64) + b


def fit_estimated_conformity(conf: np.ndarray, cos_m: np.ndarray) -> ConformityFit:
    """Least-squares a, b of Eq. 11 (C ≈ a·cos(m, v) + b) and the Pearson r of C with cos(m, v).

    (Ĉ is affine in cos(m, v), so Pearson(C, Ĉ) = Pearson(C, cos(m, v)) for a > 0.)
    """
    conf = np.asarray(conf, dtype=np.float64)
    cos_m = np.asarray(cos_m, dtype=np.float64)
    if conf.shape != cos_m.shape or conf.ndim != 1:
        raise ValueError(f"conformity and cosine must be 1-D of equal length, got {conf.shape} and {cos_m.shape}")
    if conf.size < 2:
        raise ValueError("the fit needs at least 2 samples")
    design = np.column_stack([cos_m, np.ones_like(cos_m)])
    (a, b), *_ = np.linalg.lstsq(design, conf, rcond=None)
    return ConformityFit(a=float(a), b=float(b), pearson=pearson(conf, cos_m))


def unit_row_identity(unit_mean: np.ndarray, mean: np.ndarray, n: int) -> dict:
    """Why Eq. 11 fits so well: on unit rows u_j, Eq. 10 is exactly affine in cos(ū, v_j).

    C_j = (N ū·u_j − 1)/(N − 1) = (N/(N−1))·‖ū‖·cos(ū, v_j) − 1/(N−1), with ū = E[u] the mean *unit* vector.
    Eq. 11 regresses C on cos(m, v_j) with m the raw mean instead, so its Pearson r is 1 exactly when m ∥ ū
    and falls below 1 only through the angle between m and ū. Returns the identity's slope ``identity_a``
    = N‖ū‖/(N−1) and intercept ``identity_b`` = −1/(N−1), ``unit_mean_norm`` ‖ū‖, and
    ``angle_mean_to_unit_mean_deg`` (the angle between m and ū). The paper's a ≈ 1.46 is the reverse
    regression's slope, ≈ 1/identity_a.
    """
    unit_mean = np.asarray(unit_mean, np.float64)
    mean = np.asarray(mean, np.float64)
    un, mn = float(np.linalg.norm(unit_mean)), float(np.linalg.norm(mean))
    cos = float(unit_mean @ mean / (un * mn)) if un > 0 and mn > 0 else float("nan")
    return {
        "unit_mean_norm": un,
        "angle_mean_to_unit_mean_deg": float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))),
        "identity_a": n * un / (n - 1),
        "identity_b": -1.0 / (n - 1),
    }


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson correlation coefficient (NaN when either input is constant)."""
    x = np.asarray(x, dtype=np.float64) - np.mean(x)
    y = np.asarray(y, dtype=np.float64) - np.mean(y)
    den = np.sqrt((x @ x) * (y @ y))
    return float(x @ y / den) if den > 0 else float("nan")


# ---------------------------------------------------------------------------
# Eq. 10 of the embeddings shifted by Eq. 9 (v − α·m, see clipgeom.loss.shift_embeddings)
# ---------------------------------------------------------------------------
def _shifted_norms(chunk: np.ndarray, alphas: np.ndarray, m: np.ndarray, row_offset: int):
    """‖v − α m‖ for every row and α, from ‖v‖², v·m and ‖m‖² (expanded quadratically)."""
    sq = np.einsum("ij,ij->i", chunk, chunk)
    g = chunk @ m
    sq_shift = sq[:, None] - 2.0 * g[:, None] * alphas[None, :] + (alphas**2)[None, :] * (m @ m)
    norms = np.sqrt(np.maximum(sq_shift, 0.0))
    bad = ~(norms > 0)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(f"row {int(r) + row_offset} shifted by alpha={alphas[c]:g} has zero norm")
    return norms, sq_shift


def shifted_conformity(
    x, alphas: Sequence[float], m: np.ndarray | None = None, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> np.ndarray:
    """Eq. 10 of the shifted set {v_j − α·m} (Eq. 9) for every α, without forming the shifted copies.

    With n_j(α) = ‖v_j − α m‖ (from ‖v_j‖², v_j·m, ‖m‖²) and w_j = 1/n_j the
    shifted unit sum is s(α) = Σ_j w_j v_j − α m Σ_j w_j, and
    v̂_j(α)·s(α) = (v_j·s(α) − α m·s(α)) / n_j(α): O(N·d) per α.
    ``m`` defaults to the set's raw mean (Eq. 9's m_i).  Returns (len(alphas), N).
    """
    src = _source(x, chunk_rows)
    alphas = np.asarray(alphas, dtype=np.float64).reshape(-1)
    if m is None:
        m = set_sums(src).mean
    m = np.asarray(m, dtype=np.float64)
    # pass 1: shifted unit sums s(α), one column per α
    s = None
    n = 0
    for chunk in src():
        chunk = np.asarray(chunk, dtype=np.float64)
        norms, _ = _shifted_norms(chunk, alphas, m, n)
        w = 1.0 / norms  # (c, A)
        part = chunk.T @ w - np.outer(m, alphas * w.sum(axis=0))  # (d, A)
        s = part if s is None else s + part
        n += chunk.shape[0]
    if n < 2:
        raise ValueError(f"conformity needs at least 2 vectors in the set, got {n}")
    ms = m @ s  # (A,)
    # pass 2: per-chunk conformity for every α
    out = []
    start = 0
    for chunk in src():
        chunk = np.asarray(chunk, dtype=np.float64)
        norms, sq_shift = _shifted_norms(chunk, alphas, m, start)
        dot = (chunk @ s - alphas[None, :] * ms[None, :]) / norms
        self_sq = sq_shift / (norms * norms)  # ‖v̂_j(α)‖², 1 up to rounding
        out.append(((dot - self_sq) / (n - 1)).T)
        start += chunk.shape[0]
    return np.concatenate(out, axis=1)


# ---------------------------------------------------------------------------
# KL divergence of the distributions (Fig. 11)
# ---------------------------------------------------------------------------
def kl_curve(
    image_conf_by_alpha: np.ndarray, text_conf: np.ndarray, bins: int = 50, pseudocount: float = 0.5
) -> np.ndarray:
    """KL(image(α) ‖ text) for each row of ``image_conf_by_alpha`` (Fig. 11); bins shared per α
    (:func:`clipgeom.kl.sample_histogram_kl`)."""
    return np.array([sample_histogram_kl(row, text_conf, bins, pseudocount) for row in image_conf_by_alpha])
