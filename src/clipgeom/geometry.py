"""Geometry of the double ellipsoid (paper §3–§4) and the EuCLIP origin/[ROOT] distances.

Notation (``docs``/PAPER.md): ``v`` a raw embedding of one modality, ``m`` the modality
mean, ``x̃ = v − m`` the centred vector, ``C`` the modality covariance, ``σ`` the
per-feature standard deviations (``σ² = diag C``).

Conventions used everywhere in this module

* Moments are *population* moments (``ddof = 0``): ``C = E[x̃ x̃ᵀ]`` with ``E`` the
  empirical mean over the N rows.  With this choice ``E‖x̃‖² = tr C`` holds exactly
  on the sample (Eq. 2–3), which is the identity the thin-shell argument rests on.
  Exception: the thin-shell summary (var y, sqrt(tr C), rel. error) uses ``thin_shell.ddof``
  (default 1, which reproduces the paper's 7.6007; see :func:`rms_norm_ddof`).
* Feature indices are 0-based (numpy column numbers).
* Logarithms are natural (KL in nats).

The module has two layers:

1. Pure functions, one per equation/quantity, that take small arrays (means, variances,
   a covariance, eigenvalues, histogram counts) and return numbers — easy to test by hand.
2. Streaming stage computations (``compute_separability``, ``compute_thin_shell``,
   ``compute_covariance``, ``compute_origin_distance``) that read an embeddings.h5 in
   row chunks (:func:`clipgeom.h5io.iter_embedding_chunks`) and accumulate the moments
   with :class:`MomentAccumulator` (Chan/Welford parallel update in float64), so the
   peak memory does not grow with the file beyond one float per sample for the
   per-sample values the figures need (norms, distances).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from clipgeom.h5io import count_rows, iter_embedding_chunks

MODALITIES = ("image", "text")
_LOG = logging.getLogger("clipgeom.geometry")


# ---------------------------------------------------------------------------
# Streaming moments
# ---------------------------------------------------------------------------
class MomentAccumulator:
    """Streaming mean, (co)variance, min/max and Σ of unit vectors of one modality.

    Each chunk ``X_b`` (``n_b × d``) is centred on its own mean and merged with the running
    totals by the parallel (Chan et al. 1979) form of Welford's update, all in float64::

        δ = mean_b − mean;  n' = n + n_b
        mean' = mean + δ · n_b / n'
        M2'   = M2 + (X_b − mean_b)ᵀ(X_b − mean_b) + δ δᵀ · n n_b / n'

    Centring every chunk on its own mean avoids the cancellation of the naive
    Σx² − n·mean² form when the mean is large compared with the spread (CLIP's
    modality offset).  ``full_cov=False`` keeps only the diagonal of ``M2`` — O(N·d)
    instead of O(N·d²).

    It also accumulates ``Σ v/‖v‖`` over the rows with non-zero norm (``sum_unit``,
    ``n_unit``) for the narrow-cone and [ROOT] computations, and optionally keeps the
    raw row norms ‖v‖ (one float per row).
    """

    def __init__(self, full_cov: bool = False, keep_norms: bool = False):
        self.full_cov = bool(full_cov)
        self.keep_norms = bool(keep_norms)
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.min: np.ndarray | None = None
        self.max: np.ndarray | None = None
        self.sum_unit: np.ndarray | None = None
        self.n_unit = 0
        self.n_zero = 0
        self._norms: list[np.ndarray] = []

    def update(self, x: np.ndarray) -> MomentAccumulator:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D chunk, got shape {x.shape}")
        nb = x.shape[0]
        if nb == 0:
            return self
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc if self.full_cov else np.einsum("ij,ij->j", xc, xc)
        norms = np.sqrt(np.einsum("ij,ij->i", x, x))
        nz = norms > 0
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=nz)
        su = inv @ x  # Σ_j v_j / ‖v_j‖ without an n × d copy
        if self.n == 0:
            self.mean, self.m2 = mb, m2b
            self.min, self.max = x.min(axis=0), x.max(axis=0)
            self.sum_unit = su
        else:
            delta = mb - self.mean
            n = self.n + nb
            self.mean = self.mean + delta * (nb / n)
            corr = np.outer(delta, delta) if self.full_cov else delta * delta
            self.m2 = self.m2 + m2b + corr * (self.n * nb / n)
            self.min = np.minimum(self.min, x.min(axis=0))
            self.max = np.maximum(self.max, x.max(axis=0))
            self.sum_unit = self.sum_unit + su
        self.n += nb
        self.n_unit += int(nz.sum())
        self.n_zero += int(nb - nz.sum())
        if self.keep_norms:
            self._norms.append(norms)
        return self

    @property
    def dim(self) -> int:
        return 0 if self.mean is None else int(self.mean.shape[0])

    @property
    def var(self) -> np.ndarray:
        """Per-feature population variance σ² (diagonal of C)."""
        d = np.diag(self.m2) if self.full_cov else self.m2
        return np.maximum(d / self.n, 0.0)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    @property
    def cov(self) -> np.ndarray:
        """Population covariance C = E[x̃ x̃ᵀ] (needs ``full_cov=True``)."""
        if not self.full_cov:
            raise ValueError("covariance not accumulated (full_cov=False)")
        c = self.m2 / self.n
        return (c + c.T) / 2.0

    @property
    def norms(self) -> np.ndarray:
        """Raw norms ‖v‖ of every row in file order (needs ``keep_norms=True``)."""
        if not self.keep_norms:
            raise ValueError("norms not kept (keep_norms=False)")
        return np.concatenate(self._norms) if self._norms else np.zeros(0)


# ---------------------------------------------------------------------------
# Separability (Prop. 1, Eq. 5, Figs 2–3)
# ---------------------------------------------------------------------------
def separability(mean_i, var_i, mean_t, var_t) -> np.ndarray:
    """Eq. 5: Sep(ℓ) = |m_i(ℓ) − m_t(ℓ)| / sqrt(var(v_i(ℓ)) + var(v_t(ℓ))) for every feature ℓ.

    A feature whose pooled variance is 0 gets Sep = inf when the means differ, 0 when not.
    """
    diff = np.abs(np.asarray(mean_i, float) - np.asarray(mean_t, float))
    den = np.sqrt(np.asarray(var_i, float) + np.asarray(var_t, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        sep = diff / den
    return np.where(den > 0, sep, np.where(diff > 0, np.inf, 0.0))


def mean_over_std(mean, var) -> np.ndarray:
    """Fig. 3 (right): |m(ℓ)| / σ(ℓ) per feature, the features that are far from 0 relative to their spread."""
    mean = np.abs(np.asarray(mean, float))
    sd = np.sqrt(np.asarray(var, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = mean / sd
    return np.where(sd > 0, r, np.where(mean > 0, np.inf, 0.0))


def top_features(values, k: int) -> np.ndarray:
    """Indices (0-based) of the k largest values, largest first (ties: lower index first)."""
    values = np.asarray(values, float)
    order = np.lexsort((np.arange(values.size), -values))
    return order[: max(0, min(int(k), values.size))]


def tag_features(sep, threshold: float) -> np.ndarray:
    """Modality "tag" features: those with Sep(ℓ) > threshold, sorted by Sep descending."""
    sep = np.asarray(sep, float)
    idx = np.flatnonzero(sep > threshold)
    return idx[np.lexsort((idx, -sep[idx]))]


def tag_threshold_curve(sep, thresholds) -> np.ndarray:
    """Number of "tag" features, #{ℓ : Sep(ℓ) > t}, for every threshold t (§4, "9 features act as tags").

    The paper does not state its criterion, so the count is reported as a curve over t; it is
    non-increasing in t.  Uses the same strict ``>`` as :func:`tag_features`.
    """
    sep = np.sort(np.asarray(sep, float))
    t = np.asarray(thresholds, float)
    return (sep.size - np.searchsorted(sep, t, side="right")).astype(np.int64)


def thresholds_for_count(thresholds, counts, target: int):
    """[lo, hi]: the smallest and largest grid thresholds whose tag count equals ``target``
    (§4, the paper's 9); None when no grid threshold gives exactly ``target``.

    The counts of :func:`tag_threshold_curve` are non-increasing in t, so the matching grid
    points form one contiguous run.
    """
    t = np.asarray(thresholds, float)
    hit = np.flatnonzero(np.asarray(counts) == int(target))
    return None if hit.size == 0 else [float(t[hit[0]]), float(t[hit[-1]])]


def threshold_grid(stop: float, step: float) -> np.ndarray:
    """0, step, 2·step, … up to ``stop`` inclusive (rounded to 12 decimals, so 1.2 is exactly 1.2)."""
    n = int(math.floor(float(stop) / float(step) + 1e-9))
    return np.round(np.arange(n + 1) * float(step), 12)


def histogram_kl(p_counts, q_counts, eps: float = 1e-10) -> float:
    """KL(P‖Q) = Σ_b p_b log(p_b / q_b) in nats between two histograms on the *same* bins.

    Counts are turned into probabilities, ``eps`` is added to every bin of both and they are
    renormalised (so bins empty in Q but not in P give a large, finite value: the estimate of
    two disjoint distributions is ≈ log(1/eps) and depends on ``eps`` and the binning).
    """
    p = np.asarray(p_counts, float)
    q = np.asarray(q_counts, float)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if p.sum() <= 0 or q.sum() <= 0:
        return float("nan")
    p = p / p.sum() + eps
    q = q / q.sum() + eps
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def density_histogram_kl(p_counts, q_counts, width: float, eps: float = 1e-10) -> float:
    """KL from *density* histograms summed without the bin width — a hypothesis for the paper's
    KL ≈ 301 of feature 93 (§4, Fig. 2; its estimator is not stated).

    With densities f_b = p_b / w and g_b = q_b / w (p_b = counts / N, w the common bin width),
    Σ_b f_b log(f_b / g_b) — a Riemann sum that omits the factor w — equals
    :func:`histogram_kl` / w (same ε smoothing of the probabilities).  It grows as the bins
    narrow and is not a divergence estimate; it is reported only to compare with the paper.
    """
    width = float(width)
    if not width > 0:
        return float("nan")
    return histogram_kl(p_counts, q_counts, eps) / width


def histogram_kl_saturation(p_counts, q_counts) -> tuple[bool, float]:
    """(saturated, unmatched mass) for the ε-smoothed :func:`histogram_kl` of P ‖ Q.

    ``unmatched mass`` is the probability of P on bins where Q has no counts; ``saturated`` is
    True when it is > 0 — then the KL estimate is set by ε (each such bin adds about
    p_b·log(p_b/ε)), and disjoint supports give ≈ log(1/ε) whatever the true separation.
    """
    p = np.asarray(p_counts, float)
    q = np.asarray(q_counts, float)
    if p.sum() <= 0:
        return False, 0.0
    mass = float(p[q <= 0].sum() / p.sum())
    return mass > 0, mass


def gaussian_kl(mu_p, var_p, mu_q, var_q):
    """KL(N(μ_p, σ_p²) ‖ N(μ_q, σ_q²)) = log(σ_q/σ_p) + (σ_p² + (μ_p − μ_q)²) / (2σ_q²) − ½ (nats).

    §4, Fig. 2 (KL ≈ 301 between the modalities' histograms of feature 93): the stage's headline
    ``separability.kl_top_feature`` is this closed form, image ‖ text, with the population
    moments of each modality — binning-free and not capped like the ε-smoothed
    :func:`histogram_kl` (exact only for Gaussian features).
    """
    mu_p, var_p, mu_q, var_q = (np.asarray(a, float) for a in (mu_p, var_p, mu_q, var_q))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.5 * np.log(var_q / var_p) + (var_p + (mu_p - mu_q) ** 2) / (2.0 * var_q) - 0.5


class FeatureHistograms:
    """Streaming per-feature histograms on fixed equal-width edges (one row of counts per feature).

    ``lo``/``hi`` are per-feature ranges (length d); values outside are clipped into the end
    bins and counted in ``n_clipped``.  Each update costs O(n·d) (one bincount over the chunk).
    """

    def __init__(self, lo, hi, bins: int):
        self.lo = np.asarray(lo, float).copy()
        self.hi = np.asarray(hi, float).copy()
        same = ~(self.hi > self.lo)
        self.lo[same] -= 0.5
        self.hi[same] += 0.5
        self.bins = int(bins)
        self.counts = np.zeros((self.lo.size, self.bins), dtype=np.int64)
        self.n_clipped = 0

    @property
    def edges(self) -> np.ndarray:
        """(d, bins + 1) bin edges."""
        t = np.linspace(0.0, 1.0, self.bins + 1)
        return self.lo[:, None] + (self.hi - self.lo)[:, None] * t[None, :]

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, float)
        if x.shape[0] == 0:
            return
        pos = (x - self.lo) / (self.hi - self.lo) * self.bins
        b = np.floor(pos).astype(np.int64)
        b[pos == self.bins] = self.bins - 1  # right edge belongs to the last bin
        out = (b < 0) | (b >= self.bins)
        self.n_clipped += int(out.sum())
        np.clip(b, 0, self.bins - 1, out=b)
        b += np.arange(x.shape[1], dtype=np.int64)[None, :] * self.bins
        self.counts += np.bincount(b.ravel(), minlength=self.counts.size).reshape(self.counts.shape)


# ---------------------------------------------------------------------------
# Thin shell (Prop. 2, Eqs. 1–4, Fig. 4)
# ---------------------------------------------------------------------------
def row_norms(x: np.ndarray) -> np.ndarray:
    """‖v‖ for every row."""
    x = np.asarray(x, float)
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def rms_norm_ddof(second_moment: float, n: int, ddof: int = 0) -> float:
    """sqrt(E‖x̃‖²) with a ddof-corrected second moment (§3, Eqs. 2–4).

    ``second_moment`` is the population mean of ‖x̃‖² over the n rows (= μ_norm² + var_pop(y)
    = tr C_pop); the result is sqrt(second_moment · n / (n − ddof)) = sqrt(tr C_ddof).  The
    paper's 7.6007 is this with ddof = 1 at N = 5000 from μ_norm = 7.5873, var(y) = 0.1914
    (ddof = 0 gives 7.5999).
    """
    n, ddof = int(n), int(ddof)
    if n - ddof <= 0:
        return float("nan")
    return math.sqrt(max(float(second_moment), 0.0) * n / (n - ddof))


def thin_shell(norms, trace_c: float, ddof: int = 0) -> dict:
    """Eqs. 1–4 for one modality from the centred norms ‖x̃_j‖ and the population tr C.

    Writing ‖x̃‖ = μ_norm + y with μ_norm = E‖x̃‖ and E[y] = 0 (Eq. 1),
    E‖x̃‖² = μ_norm² + var(y) (Eq. 2) = tr C (Eq. 3), hence μ_norm ≈ sqrt(E‖x̃‖²) = sqrt(tr C)
    when μ_norm² ≫ var(y) (Eq. 4).  ``trace_c`` is tr C with population moments (ddof 0);
    ``ddof`` (the stage's ``thin_shell.ddof``, default 1 there: the paper's numbers) sets the
    estimator of var(y) and of tr C.  Returns

    * ``mu_norm`` = E‖x̃‖ (no ddof), ``var_y`` = var(‖x̃‖) with ``ddof``, ``mu_norm_sq`` = μ_norm²;
    * ``rms_norm`` = sqrt(tr C_ddof) = :func:`rms_norm_ddof` (the paper's sqrt(E‖x̃‖²));
    * ``rel_error`` = (rms_norm − μ_norm) / rms_norm (paper: 0.18% for COCO images, ddof 1);
    * ``identity_residual`` = μ_norm² + var_pop(y) − tr C_pop, the population form of Eq. 2–3
      (0 up to rounding when the norms and C come from the same rows and mean);
    * ``ddof``.
    """
    norms = np.asarray(norms, float)
    n = norms.size
    mu = float(norms.mean())
    var_pop = float(norms.var())
    var_y = float(norms.var(ddof=int(ddof))) if n > int(ddof) else float("nan")
    rms = rms_norm_ddof(trace_c, n, ddof)
    return {
        "mu_norm": mu,
        "var_y": var_y,
        "mu_norm_sq": mu * mu,
        "rms_norm": rms,
        "rel_error": (rms - mu) / rms if rms > 0 else float("nan"),
        "identity_residual": mu * mu + var_pop - float(trace_c),
        "ddof": int(ddof),
    }


# ---------------------------------------------------------------------------
# Covariance structure (Props. 3–5, Eq. 6, Fig. 5)
# ---------------------------------------------------------------------------
def off_diagonal_dominance(cov) -> np.ndarray:
    """Eq. 6: ODD(ℓ) = Σ_{k≠ℓ} |C_ℓk| / C_ℓℓ for every row ℓ of C (inf where C_ℓℓ = 0)."""
    c = np.asarray(cov, float)
    a = np.abs(c)
    diag = np.diag(c).copy()
    off = a.sum(axis=1) - np.abs(diag)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(diag > 0, off / diag, np.inf)


def _odd_median_of(x) -> float:
    """Median over features of Eq. 6's ODD of the population covariance of the rows ``x`` (N × d)."""
    xc = np.asarray(x, float)
    xc = xc - xc.mean(axis=0)
    return float(np.median(off_diagonal_dominance(xc.T @ xc / len(xc))))


def odd_null_medians(x, reps: int, seed: int = 0) -> dict:
    """Null baselines of the median ODD (Eq. 6) of the rows ``x`` (N × d), ``reps`` draws of each:

    * ``permutation``: every column of the centred data permuted independently (destroys the
      correlations between features, keeps each feature's marginal distribution), covariance and ODD
      recomputed;
    * ``gaussian``: N × d draws of an untilted (diagonal) Gaussian with the same per-feature variances.

    Both give the ODD that sampling noise alone produces at this N and d (an untilted Gaussian with
    CLIP-like variances has median ODD ≈ 6.5 at N = 5000, d = 512: every feature "≥ 1").  Returns
    ``{observed, permutation: [reps medians], gaussian: [reps medians]}``.
    """
    rng = np.random.default_rng(seed)
    xc = np.asarray(x, float)
    xc = xc - xc.mean(axis=0)
    n = len(xc)
    sd = np.sqrt(np.mean(xc * xc, axis=0))
    perm, gau = [], []
    for _ in range(int(reps)):
        perm.append(_odd_median_of(rng.permuted(xc, axis=0)))
        gau.append(_odd_median_of(rng.standard_normal(xc.shape) * sd))
    return {"observed": _odd_median_of(xc), "n": n, "permutation": perm, "gaussian": gau}


def odd_null_summary(observed: float, perm, gau) -> dict:
    """Summary keys of :func:`odd_null_medians`: null means, ratio to the larger null, permutation p-value.

    ``odd_p_value = (1 + #{permutation null median >= observed}) / (1 + reps)``.
    """
    perm, gau = np.asarray(perm, float), np.asarray(gau, float)
    if perm.size == 0:
        return {
            "odd_median_null_permutation": None,
            "odd_median_null_gaussian": None,
            "odd_median_ratio_to_null": None,
            "odd_p_value": None,
        }
    mp, mg = float(perm.mean()), float(gau.mean())
    top = max(mp, mg)
    return {
        "odd_median_null_permutation": mp,
        "odd_median_null_gaussian": mg,
        "odd_median_ratio_to_null": float(observed / top) if top > 0 else None,
        "odd_p_value": float((1 + np.sum(perm >= observed)) / (1 + perm.size)),
    }


ODD_NULL_ESTIMATOR = (
    "median over features of Eq. 6's ODD against two nulls of the same N x d, covariance.null_reps draws each: "
    "(a) every column of the centred data permuted independently (no correlation, same marginals); "
    "(b) an untilted Gaussian with the same per-feature variances. odd_median_null_* are means over the draws; "
    "odd_median_ratio_to_null = observed median / the larger null mean; odd_p_value = (1 + #{permutation "
    "median >= observed}) / (1 + reps). Computed on at most covariance.null_max_rows rows per modality "
    "(seeded subsample, covariance.seed); the observed median of the ratio and p-value is on the same rows"
)


def _eigh(cov):
    """numpy's eigh with BLAS on one thread: for d ~ 512 that is as fast, and multithreaded LAPACK
    slows down by orders of magnitude when the cores are oversubscribed (parallel Snakemake jobs)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.eigh(np.asarray(cov, float))


def eigen_spectrum(cov) -> np.ndarray:
    """Eigenvalues of the symmetric C, largest first (tiny negative round-off set to 0)."""
    return np.clip(_eigh(cov)[0][::-1], 0.0, None)


def effective_rank(eigvals) -> float:
    """Entropy effective rank (Roy & Vetterli 2007): exp(−Σ p_k log p_k), p_k = λ_k / Σλ.

    Ranges from 1 (one direction) to d (isotropic); zero eigenvalues contribute 0.
    """
    lam = np.clip(np.asarray(eigvals, float), 0.0, None)
    s = lam.sum()
    if s <= 0:
        return float("nan")
    p = lam[lam > 0] / s
    return float(np.exp(-np.sum(p * np.log(p))))


def participation_ratio(eigvals) -> float:
    """Participation ratio (Σλ)² / Σλ², another effective dimension (1 … d)."""
    lam = np.clip(np.asarray(eigvals, float), 0.0, None)
    s2 = float(np.sum(lam * lam))
    return float(lam.sum() ** 2 / s2) if s2 > 0 else float("nan")


def mean_to_std_ratio(mean, var) -> float:
    """‖m‖ / ‖σ‖ (paper: 0.94 images, 1.03 text): the offset of the shell from the origin
    relative to its spread (‖σ‖ = sqrt(tr C))."""
    den = math.sqrt(float(np.sum(np.asarray(var, float))))
    return float(np.linalg.norm(np.asarray(mean, float)) / den) if den > 0 else float("nan")


def angle_deg(a, b) -> float:
    """Angle between two vectors in degrees."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    den = np.linalg.norm(a) * np.linalg.norm(b)
    if den == 0:
        return float("nan")
    return float(np.degrees(np.arccos(np.clip(a @ b / den, -1.0, 1.0))))


def mean_pairwise_cosine(sum_unit, n: int) -> float:
    """Mean of cos(v_j, v_k) over ordered pairs j ≠ k of n vectors, without forming n × n.

    With s = Σ_j v̂_j (v̂ = v/‖v‖): ‖s‖² = Σ_j Σ_k v̂_j·v̂_k = n + Σ_{j≠k} v̂_j·v̂_k, so the mean is
    (‖s‖² − n) / (n(n − 1)).  High values = the narrow cone.
    """
    if n < 2:
        return float("nan")
    s = np.asarray(sum_unit, float)
    return float((s @ s - n) / (n * (n - 1.0)))


def mean_cross_cosine(sum_unit_a, n_a: int, sum_unit_b, n_b: int) -> float:
    """Mean cos(a_j, b_k) over all pairs of two sets: (Σ â)·(Σ b̂) / (n_a n_b)."""
    if n_a == 0 or n_b == 0:
        return float("nan")
    return float(np.asarray(sum_unit_a, float) @ np.asarray(sum_unit_b, float) / (n_a * n_b))


# ---------------------------------------------------------------------------
# Whitening (paper supplementary)
# ---------------------------------------------------------------------------
def whitening_matrix(cov, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening: W = Λ_k^{-1/2} U_kᵀ (k × d) so that z = W x̃ has identity covariance.

    Only eigen-directions with λ > rtol · λ_max are kept (a rank-deficient C, e.g. N ≤ d,
    cannot be whitened in its null space).  Returns ``(W, kept eigenvalues)``, largest first.
    """
    lam, u = _eigh(cov)
    return whitening_from_eigh(lam, u, rtol)


def whitening_from_eigh(lam, u, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """:func:`whitening_matrix` from an eigen-decomposition ``lam, u = eigh(C)`` (ascending, numpy order)."""
    lam, u = np.asarray(lam, float)[::-1], np.asarray(u, float)[:, ::-1]
    keep = lam > rtol * max(float(lam[0]), 0.0) if lam.size else np.zeros(0, bool)
    keep &= lam > 0
    lam_k = lam[keep]
    return (u[:, keep] / np.sqrt(lam_k)).T, lam_k


def chi_mean(k: int) -> float:
    """E‖z‖ for z ~ N(0, I_k): sqrt(2) Γ((k+1)/2) / Γ(k/2)."""
    return float(math.sqrt(2.0) * math.exp(math.lgamma((k + 1) / 2.0) - math.lgamma(k / 2.0)))


def excess_kurtosis(m2, m4) -> np.ndarray:
    """Excess kurtosis m4 / m2² − 3 from the central moments m2 = E z², m4 = E z⁴ (0 for a Gaussian)."""
    m2, m4 = np.asarray(m2, float), np.asarray(m4, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return m4 / (m2 * m2) - 3.0


# ---------------------------------------------------------------------------
# EuCLIP Fig. 2: distance from the origin and cosine distance from [ROOT]
# ---------------------------------------------------------------------------
def root_vector(sum_unit_i, n_i: int, sum_unit_t, n_t: int) -> np.ndarray:
    """[ROOT]: the mean of all L2-normalised image and text embeddings together,
    (Σ v̂_i + Σ v̂_t) / (N_i + N_t)."""
    return (np.asarray(sum_unit_i, float) + np.asarray(sum_unit_t, float)) / float(n_i + n_t)


ROOT_DISTANCE_FORM = "(1 - cos(v, ROOT)) / 2 in [0, 1]"


def scaled_cosine_distance(x, ref) -> np.ndarray:
    """EuCLIP's scaled cosine distance from [ROOT], (1 − cos(v_j, ref)) / 2 ∈ [0, 1] (NaN for a zero row).

    Source: ../shared/papers/001_cc9a41b30d4fca13.txt, Figure 2 caption: "Note that this scaled
    "cosine distance" $\\in [0, 1]$ even though most of the embeddings are no further than $0.5$ from the
    root, replicating the cone effect".  The threshold 0.5 thus means cos(v, ROOT) ≥ 0 (not 1 − cos ≤ 0.5).
    """
    return 0.5 * cosine_distance(x, ref)


def cosine_distance(x, ref) -> np.ndarray:
    """1 − cos(v_j, ref) for every row v_j (NaN for a zero row)."""
    x = np.asarray(x, float)
    ref = np.asarray(ref, float)
    den = row_norms(x) * np.linalg.norm(ref)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - (x @ ref) / den


# ---------------------------------------------------------------------------
# Linear SVM (Fig. 2)
# ---------------------------------------------------------------------------
def _svm_pipeline(c: float, max_iter: int):
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    return make_pipeline(StandardScaler(), LinearSVC(C=c, dual=False, max_iter=max_iter))


def svm_cv_accuracy(x, y, folds: int = 5, seed: int = 0, c: float = 1.0, max_iter: int = 5000) -> dict:
    """Held-out accuracy of a linear SVM (features standardised) by stratified k-fold CV."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold, cross_validate

    x = np.asarray(x)  # float32 stays float32 until liblinear's own copy
    y = np.asarray(y)
    cv = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=int(seed))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        res = cross_validate(_svm_pipeline(c, max_iter), x, y, cv=cv, scoring=("accuracy", "balanced_accuracy"))
    n_conv = sum(issubclass(w.category, ConvergenceWarning) for w in caught)
    return {
        "accuracy": float(np.mean(res["test_accuracy"])),
        "accuracy_folds": [float(a) for a in res["test_accuracy"]],
        "balanced_accuracy": float(np.mean(res["test_balanced_accuracy"])),
        "min_fold_accuracy": float(np.min(res["test_accuracy"])),
        "convergence_warnings": int(n_conv),
    }


def svm_boundary(x, y, c: float = 1.0, max_iter: int = 5000) -> tuple[np.ndarray, float, float]:
    """Fit on all of (x, y); return (w, b, training accuracy) with the boundary w·x + b = 0
    expressed in the original (unstandardised) coordinates."""
    x = np.asarray(x, float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = _svm_pipeline(c, max_iter).fit(x, y)
    scaler, svc = pipe.steps[0][1], pipe.steps[1][1]
    w = svc.coef_[0] / scaler.scale_
    b = float(svc.intercept_[0] - np.sum(svc.coef_[0] * scaler.mean_ / scaler.scale_))
    return w, b, float(pipe.score(x, y))


# ---------------------------------------------------------------------------
# Streaming stage computations
# ---------------------------------------------------------------------------
@dataclass
class StageResult:
    """What a stage computed: ``summary`` and ``details`` for metrics.json, ``columns`` for the
    CSV, ``plot`` the arrays its figures need."""

    summary: dict
    details: dict
    columns: dict
    plot: dict = field(default_factory=dict)


def _check_rows(path, log) -> dict:
    rows = {}
    for mod in MODALITIES:
        n, d = count_rows(path, mod)
        if n < 2:
            raise ValueError(
                f"{path}: the {mod} modality has {n} row(s); the geometry stages need "
                f"at least 2 image and 2 text embeddings"
            )
        rows[mod] = (n, d)
    if rows["image"][1] != rows["text"][1]:
        raise ValueError(f"{path}: image width {rows['image'][1]} != text width {rows['text'][1]}")
    log.info("%s: %d image and %d text rows, d = %d", path, rows["image"][0], rows["text"][0], rows["image"][1])
    return rows


def _moments(path, mod, chunk_rows, full_cov=False, keep_norms=False, sample_idx=None):
    """One pass over a modality; optionally gathers the rows ``sample_idx`` (sorted)."""
    acc = MomentAccumulator(full_cov=full_cov, keep_norms=keep_norms)
    gathered = []
    start = 0
    for x in iter_embedding_chunks(path, mod, chunk_rows):
        acc.update(x)
        if sample_idx is not None:
            lo, hi = np.searchsorted(sample_idx, [start, start + len(x)])
            gathered.append(x[sample_idx[lo:hi] - start].astype(np.float32))  # stored precision
        start += len(x)
    sample = np.concatenate(gathered) if sample_idx is not None else None
    return acc, sample


def _log_zero(acc, mod, log):
    if acc.n_zero:
        log.warning("%s: %d row(s) with zero norm left out of the normalised quantities", mod, acc.n_zero)


def _quantiles(a) -> dict:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {}
    q = np.quantile(a, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": q[0], "p05": q[1], "median": q[2], "p95": q[3], "max": q[4], "mean": float(a.mean())}


def compute_separability(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Prop. 1, Eq. 5, Figs 2–3 (see the module docstring for conventions).

    Pass 1 (O(N·d)): per-feature mean/variance/min/max per modality and a seeded random row
    subsample (≤ ``svm_max_samples`` per modality) for the SVMs.  Pass 2 (O(N·d)): per-feature
    histograms of both modalities on shared equal-width bins (``kl_bins`` over the pooled
    [min, max] of each feature) for the KL estimate and the figures.
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    rng = np.random.default_rng(int(p["seed"]))
    accs, samples, sample_sizes = {}, {}, {}
    for mod in MODALITIES:
        n = rows[mod][0]
        k = min(n, int(p["svm_max_samples"]))
        idx = np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
        if k < n:
            log.info("%s: SVMs use a random subsample of %d of %d rows (seed %d)", mod, k, n, p["seed"])
        accs[mod], samples[mod] = _moments(path, mod, chunk, sample_idx=idx)
        sample_sizes[mod] = k
    ai, at = accs["image"], accs["text"]
    sep = separability(ai.mean, ai.var, at.mean, at.var)
    ms = {mod: mean_over_std(accs[mod].mean, accs[mod].var) for mod in MODALITIES}

    # pass 2: per-feature histograms on shared bins
    lo, hi = np.minimum(ai.min, at.min), np.maximum(ai.max, at.max)
    hists = {}
    for mod in MODALITIES:
        h = FeatureHistograms(lo, hi, int(p["kl_bins"]))
        for x in iter_embedding_chunks(path, mod, chunk):
            h.update(x)
        if h.n_clipped:
            log.warning("%s: %d value(s) outside the histogram range were put in the end bins", mod, h.n_clipped)
        hists[mod] = h
    eps = float(p["kl_eps"])
    kl_it = np.array(
        [histogram_kl(a, b, eps) for a, b in zip(hists["image"].counts, hists["text"].counts, strict=False)]
    )
    kl_ti = np.array(
        [histogram_kl(b, a, eps) for a, b in zip(hists["image"].counts, hists["text"].counts, strict=False)]
    )
    kl_g = gaussian_kl(ai.mean, ai.var, at.mean, at.var)
    widths = (hists["image"].hi - hists["image"].lo) / hists["image"].bins
    kl_dens = kl_it / widths

    order = top_features(sep, sep.size)
    rank = np.empty(sep.size, dtype=np.int64)
    rank[order] = np.arange(1, sep.size + 1)
    top_k = int(p["top_k"])
    top_sep = order[:top_k]
    tags = tag_features(sep, float(p["tag_threshold"]))
    top2 = order[:2]
    f0 = int(order[0])
    sat, unmatched = histogram_kl_saturation(hists["image"].counts[f0], hists["text"].counts[f0])
    if sat:
        log.info(
            "histogram KL of feature %d is eps-limited: %.3g of the image mass lies in bins with no text", f0, unmatched
        )
    grid = threshold_grid(float(p["tag_curve_max"]), float(p["tag_curve_step"]))
    curve = tag_threshold_curve(sep, grid)
    paper_count = int(p["paper_n_tag_features"])
    t_paper = thresholds_for_count(grid, curve, paper_count)
    log.info(
        "tag features: %d at Sep > %g; %s",
        tags.size,
        p["tag_threshold"],
        f"{paper_count} for t in [{t_paper[0]:g}, {t_paper[1]:g}]"
        if t_paper
        else f"no grid threshold gives {paper_count}",
    )

    # SVMs (held-out, stratified k-fold) on the subsample
    x_all = np.concatenate([samples["image"], samples["text"]])
    y = np.concatenate([np.zeros(len(samples["image"]), int), np.ones(len(samples["text"]), int)])
    folds = int(p["svm_folds"])
    min_class = int(min(sample_sizes.values()))
    if min_class < folds:
        log.warning(
            "only %d rows in the smaller modality: SVM folds reduced from %d to %d", min_class, folds, max(2, min_class)
        )
        folds = max(2, min_class)
    svm_c, max_iter = float(p["svm_c"]), int(p["svm_max_iter"])
    log.info("linear SVM on features %s (%d-fold CV, %d rows)", top2.tolist(), folds, len(y))
    svm2 = svm_cv_accuracy(x_all[:, top2], y, folds, p["seed"], svm_c, max_iter)
    log.info("linear SVM on all %d features", x_all.shape[1])
    svm_all = svm_cv_accuracy(x_all, y, folds, p["seed"], svm_c, max_iter)
    for name, r in (("top-2", svm2), ("all-feature", svm_all)):
        if r["convergence_warnings"]:
            log.warning(
                "%s SVM: %d fit(s) did not converge in %d iterations", name, r["convergence_warnings"], max_iter
            )
    d = sep.size
    rng_ctrl = np.random.default_rng([int(p["seed"]), 1])
    rand_pairs = [np.sort(rng_ctrl.choice(d, size=2, replace=False)) for _ in range(int(p["svm_random_draws"]))]
    rand_acc = [svm_cv_accuracy(x_all[:, pr], y, folds, p["seed"], svm_c, max_iter)["accuracy"] for pr in rand_pairs]
    log.info(
        "control: linear SVM on 2 random features, %d draws: mean accuracy %.4f",
        len(rand_pairs),
        float(np.mean(rand_acc)),
    )
    paper_feats = [int(f) for f in p["paper_features"]]
    pf_ok = [0 <= f < d for f in paper_feats]
    for f, ok in zip(paper_feats, pf_ok, strict=False):
        if not ok:
            log.warning("paper feature %d skipped: the embeddings have d = %d features", f, d)
    pf_svm = None
    if len(paper_feats) >= 2 and all(pf_ok[:2]):
        pf_svm = svm_cv_accuracy(x_all[:, paper_feats[:2]], y, folds, p["seed"], svm_c, max_iter)
    else:
        log.warning("SVM on the paper's features skipped: needs two named features within d = %d", d)
    paper_block = {
        "indices": paper_feats,
        "sep": [float(sep[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
        "rank_by_sep": [int(rank[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
        "svm_accuracy": pf_svm["accuracy"] if pf_svm else None,
        "kl_gaussian": [float(kl_g[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
    }
    w, b, train_acc = svm_boundary(x_all[:, top2], y, svm_c, max_iter)
    log.info(
        "Sep max %.3f (feature %d); %d tag features (Sep > %g); SVM top-2 %.4f, all %.4f",
        sep[order[0]],
        order[0],
        tags.size,
        p["tag_threshold"],
        svm2["accuracy"],
        svm_all["accuracy"],
    )

    def feat_row(f):
        f = int(f)
        return {
            "feature": f,
            "sep": sep[f],
            "rank": int(rank[f]),
            "mean_image": ai.mean[f],
            "mean_text": at.mean[f],
            "std_image": ai.std[f],
            "std_text": at.std[f],
            "kl_image_text": kl_it[f],
            "kl_text_image": kl_ti[f],
            "kl_gaussian_image_text": kl_g[f],
        }

    summary = {
        "svm_top2_accuracy": svm2["accuracy"],
        "svm_random2_accuracy": float(np.mean(rand_acc)),
        "top2_features": [int(f) for f in top2],
        "n_tag_features": int(tags.size),
        "tag_threshold": float(p["tag_threshold"]),
        "tag_threshold_for_paper_count": t_paper,
        "kl_top_feature": kl_g[f0],
        "kl_estimator": "gaussian closed form, image‖text",
        "kl_top_feature_gaussian": kl_g[f0],
        "kl_top_feature_density": kl_dens[f0],
        "kl_top_feature_histogram": kl_it[f0],
        "kl_top_feature_histogram_saturated": bool(sat),
        "svm_all_accuracy": svm_all["accuracy"],
        "max_sep": sep[f0],
        "paper_features": paper_block,
    }
    details = {
        "n_image": rows["image"][0],
        "n_text": rows["text"][0],
        "dim": rows["image"][1],
        "feature_index_base": 0,
        "feature_index_note": (
            "feature indices are 0-based numpy column numbers; the paper's features 93, 134 and 494 "
            "(ViT-B/32, COCO) are most likely 0-based numpy indices too, so compare them directly"
        ),
        "top_separable": [feat_row(f) for f in top_sep],
        "top_mean_over_std": {
            mod: [
                {"feature": int(f), "abs_mean_over_std": ms[mod][f], "mean": accs[mod].mean[f], "std": accs[mod].std[f]}
                for f in top_features(ms[mod], top_k)
            ]
            for mod in MODALITIES
        },
        "tag_threshold": float(p["tag_threshold"]),
        "tag_features": [int(f) for f in tags],
        "tag_threshold_curve": {
            "criterion": "count of features with Sep > t (Eq. 5), strict",
            "paper_count": paper_count,
            "thresholds": [float(t) for t in grid],
            "n_tag_features": [int(c) for c in curve],
        },
        "kl": {
            "headline": "separability.kl_top_feature = Gaussian closed form KL(N(m_i, var_i) || N(m_t, var_t)) "
            "of the feature of largest Sep, population moments (nats)",
            "density_hypothesis": "kl_top_feature_density = sum_b f_b log(f_b / g_b) over density histograms "
            "f = counts / (N width), without the bin width (= histogram KL / width): "
            "a guess at the paper's unstated estimator, not a divergence estimate",
            "top_feature_bin_width": widths[f0],
            "top_feature_density": kl_dens[f0],
            "top_feature_histogram_saturated": bool(sat),
            "top_feature_unmatched_mass": unmatched,
            "estimator": "histogram plug-in KL(image || text) in nats, per feature (secondary)",
            "binning": f"{int(p['kl_bins'])} equal-width bins per feature over the pooled [min, max] of both "
            "modalities",
            "eps": eps,
            "smoothing": "eps added to every bin probability of both histograms, then renormalised",
            "note": "two disjoint distributions give about log(1/eps); the Gaussian closed form is reported too",
            "top_feature": int(order[0]),
            "top_feature_image_text": kl_it[order[0]],
            "top_feature_text_image": kl_ti[order[0]],
            "top_feature_gaussian": kl_g[order[0]],
        },
        "svm": {
            "model": f"sklearn LinearSVC (primal), features standardised, C = {svm_c:g}",
            "validation": f"stratified {folds}-fold cross-validation, shuffled (seed {int(p['seed'])}); "
            "accuracy is the mean held-out fold accuracy",
            "subsample": {mod: {"used": sample_sizes[mod], "of": rows[mod][0]} for mod in MODALITIES},
            "subsample_rule": f"at most svm_max_samples = {int(p['svm_max_samples'])} rows per modality, "
            f"drawn uniformly without replacement (seed {int(p['seed'])})",
            "top2": {
                "features": [int(f) for f in top2],
                **svm2,
                "boundary": {"w": w, "b": b, "training_accuracy": train_acc},
            },
            "random2_control": {
                "rule": f"{len(rand_pairs)} draws of 2 distinct features, uniform (seed [{int(p['seed'])}, 1]); "
                "same SVM and folds as top2",
                "features": [[int(f) for f in pr] for pr in rand_pairs],
                "accuracy": [float(a) for a in rand_acc],
                "mean_accuracy": float(np.mean(rand_acc)),
            },
            "paper_features": ({"features": paper_feats[:2], **pf_svm} if pf_svm else None),
            "all_features": svm_all,
        },
        "zero_norm_rows": {mod: accs[mod].n_zero for mod in MODALITIES},
        "histogram_clipped_values": {mod: hists[mod].n_clipped for mod in MODALITIES},
    }
    columns = {
        "feature": np.arange(sep.size),
        "sep": sep,
        "sep_rank": rank,
        "mean_image": ai.mean,
        "mean_text": at.mean,
        "std_image": ai.std,
        "std_text": at.std,
        "abs_mean_over_std_image": ms["image"],
        "abs_mean_over_std_text": ms["text"],
        "kl_image_text": kl_it,
        "kl_text_image": kl_ti,
        "kl_gaussian_image_text": kl_g,
        "kl_density_image_text": kl_dens,
        "is_tag": (sep > float(p["tag_threshold"])).astype(int),
    }
    nh = int(p["n_hist_features"])
    plot = {
        "sep": sep,
        "tag_threshold": float(p["tag_threshold"]),
        "mean_over_std": ms,
        "top_k": top_k,
        "hist_features": order[:nh],
        "hist_edges": hists["image"].edges[order[:nh]],
        "hist_counts": {mod: hists[mod].counts[order[:nh]] for mod in MODALITIES},
        "hist_kl": kl_g[order[:nh]],
        "tag_curve": {"threshold": grid, "n_tag_features": curve},
        "svm_x": x_all[:, top2],
        "svm_y": y,
        "svm_w": w,
        "svm_b": b,
        "svm_accuracy": svm2["accuracy"],
        "top2": top2,
    }
    return StageResult(summary, details, columns, plot)


def compute_thin_shell(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Prop. 2, Eqs. 1–4, Fig. 4, per modality on x̃ = v − m.

    Pass 1 (O(N·d)): mean, per-feature variance (tr C = Σ σ²), min/max and raw norms ‖v‖.
    Pass 2 (O(N·d)): centred norms ‖x̃‖ and histograms of the first ``n_features`` features of x̃.
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    nf = min(int(p["n_features"]), rows["image"][1])
    bins = int(p["hist_bins"])
    ddof = int(p["ddof"])
    summary, details, cols, plot = {}, {}, {"modality": [], "row": [], "norm_raw": [], "norm_centred": []}, {}
    for mod in MODALITIES:
        acc, _ = _moments(path, mod, chunk, keep_norms=True)
        m = acc.mean
        h = FeatureHistograms(acc.min[:nf] - m[:nf], acc.max[:nf] - m[:nf], bins)
        cn = []
        for x in iter_embedding_chunks(path, mod, chunk):
            xc = x - m
            cn.append(row_norms(xc))
            h.update(xc[:, :nf])
        cn = np.concatenate(cn)
        if h.n_clipped:
            log.warning("%s: %d value(s) outside the histogram range were put in the end bins", mod, h.n_clipped)
        trace_c = float(acc.var.sum())
        ts = thin_shell(cn, trace_c, ddof)
        raw = acc.norms
        log.info(
            "%s: mu_norm %.5g, var(y) %.5g, sqrt(tr C) %.5g, rel. error %.3g%%",
            mod,
            ts["mu_norm"],
            ts["var_y"],
            ts["rms_norm"],
            100 * ts["rel_error"],
        )
        summary[mod] = {k: ts[k] for k in ("mu_norm", "var_y", "rms_norm", "rel_error")}
        details[mod] = {
            "n": acc.n,
            **ts,
            "trace_cov": trace_c * acc.n / (acc.n - ddof) if acc.n > ddof else float("nan"),
            "trace_cov_population": trace_c,
            "rms_norm_from_norms": rms_norm_ddof(float(np.mean(cn * cn)), acc.n, ddof),
            "centred_norm": _quantiles(cn),
            "min_centred_norm_over_mu": float(cn.min() / ts["mu_norm"]) if ts["mu_norm"] > 0 else None,
            "raw": {
                "mean_norm": float(raw.mean()),
                "var_norm": float(raw.var()),
                "rms_norm": math.sqrt(trace_c + float(m @ m)),
                "mean_norm_vector": float(np.linalg.norm(m)),
                "quantiles": _quantiles(raw),
            },
        }
        cols["modality"].append(np.full(acc.n, mod, dtype=object))
        cols["row"].append(np.arange(acc.n))
        cols["norm_raw"].append(raw)
        cols["norm_centred"].append(cn)
        plot[mod] = {
            "norm_raw": raw,
            "norm_centred": cn,
            "feat_edges": h.edges,
            "feat_counts": h.counts,
            "mu_norm": ts["mu_norm"],
            "rms_norm": ts["rms_norm"],
        }
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    summary["ddof"] = ddof
    details["n_features_histogram"] = nf
    details["conventions"] = (
        f"ddof = {ddof} (thin_shell.ddof; 1 reproduces the paper's 7.6007): var_y = var(||x~||) "
        "with ddof; rms_norm = sqrt(tr C) = sqrt(E||x~||^2 * N / (N - ddof)); "
        "rel_error = (rms_norm - mu_norm) / rms_norm; mu_norm = E||x~|| and the mean m "
        "need no correction; identity_residual uses population moments"
    )
    plot["n_features"] = nf
    return StageResult(summary, details, cols, plot)


def ks_chi(x, k: int) -> tuple[float, float]:
    """Kolmogorov–Smirnov distance between the sample ``x`` and the chi(k) distribution (the law of
    ‖z‖ for z ~ N(0, I_k)), and its asymptotic p-value (Kolmogorov distribution of sqrt(n)·D).

    chi(k) CDF: P(k/2, x²/2), the regularised lower incomplete gamma function.
    """
    from scipy.special import gammainc, kolmogorov  # light; scipy.stats takes seconds to import

    x = np.sort(np.asarray(x, float))
    n = x.size
    cdf = gammainc(k / 2.0, x * x / 2.0)
    i = np.arange(1, n + 1)
    d = float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))
    return d, float(kolmogorov(math.sqrt(n) * d))


def ks_chi_heldout(x, seed: int = 0, rtol: float = 1e-10) -> tuple[float, float, int] | None:
    """Calibrated KS test of ‖z‖ against chi(k): mean and whitening fitted on a random half of the rows
    ``x`` (seeded), the other half's whitened norms tested.  In-sample (:func:`ks_chi` on the rows the
    whitening was fitted on) the test is uncalibrated: an exactly Gaussian sample of N = 5000, d = 512
    gives p ≈ 0.04.  Returns ``(statistic, p-value, k)``, or None when a half has no more rows than d.
    """
    x = np.asarray(x, float)
    n, d = x.shape
    perm = np.random.default_rng(seed).permutation(n)
    fit, test = x[perm[: n // 2]], x[perm[n // 2 :]]
    if len(fit) <= d or len(test) < 2:
        return None
    m = fit.mean(axis=0)
    fc = fit - m
    w, lam = whitening_matrix(fc.T @ fc / len(fc), rtol)
    if lam.size == 0:
        return None
    zn = np.linalg.norm((test - m) @ w.T, axis=1)
    st, pv = ks_chi(zn, lam.size)
    return st, pv, int(lam.size)


def compute_covariance(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Props. 3–5, Eq. 6, Fig. 5 and the whitening of the supplementary, per modality.

    Pass 1 (O(N·d²), BLAS-bound): mean and full covariance C; Σ v̂ for the mean pairwise cosine.
    Then O(d³): eigen-decomposition.  Pass 2 (only with ``whiten``; O(N·d·k)): whitened vectors
    z = Λ^{-1/2} Uᵀ x̃, their norms (1 float/row) and Σ z², Σ z⁴ per principal axis (kurtosis).
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    d = rows["image"][1]
    summary, details, plot = {}, {}, {}
    cols = {"index": np.arange(d)}
    accs = {}
    for mod in MODALITIES:
        n_rows = rows[mod][0]
        reps = int(p.get("null_reps", 0))
        rng_s = np.random.default_rng(int(p.get("seed", 0)))
        m_null = min(n_rows, int(p.get("null_max_rows", 5000)))
        idx = np.sort(rng_s.choice(n_rows, m_null, replace=False)) if reps > 0 or p["whiten"] else None
        acc, sample = _moments(path, mod, chunk, full_cov=True, sample_idx=idx)
        _log_zero(acc, mod, log)
        accs[mod] = acc
        c = acc.cov
        var = np.diag(c).copy()
        odd = off_diagonal_dominance(c)
        lam_all, u_all = _eigh(c)  # O(d³), once for the spectrum and the whitening
        eig = np.clip(lam_all[::-1], 0.0, None)
        er, pr = effective_rank(eig), participation_ratio(eig)
        ratio = mean_to_std_ratio(acc.mean, var)
        cone = mean_pairwise_cosine(acc.sum_unit, acc.n_unit)
        det = {
            "n": acc.n,
            "trace_cov": float(var.sum()),
            "mean_norm": float(np.linalg.norm(acc.mean)),
            "std_norm": math.sqrt(float(var.sum())),
            "mean_to_std_ratio": ratio,
            "effective_rank": er,
            "participation_ratio": pr,
            "eigenvalues_top10": eig[:10],
            "explained_top10": float(eig[:10].sum() / eig.sum()) if eig.sum() > 0 else None,
            "variance": {
                **_quantiles(var),
                "max_over_median": float(var.max() / np.median(var)) if np.median(var) > 0 else None,
            },
            "odd": {**_quantiles(odd), "frac_ge_1": float(np.mean(odd >= 1.0))},
            "mean_pairwise_cosine": cone,
            "zero_norm_rows": acc.n_zero,
        }
        summary[mod] = {"mean_to_std_ratio": ratio, "effective_rank": er}
        if reps > 0:
            nulls = odd_null_medians(sample, reps, int(p.get("seed", 0)))
            summary[mod].update(odd_null_summary(nulls["observed"], nulls["permutation"], nulls["gaussian"]))
            summary[mod]["odd_null_estimator"] = ODD_NULL_ESTIMATOR
            det["odd_null"] = {**nulls, "rows": int(m_null)}
        log.info(
            "%s: ||m||/||sigma|| %.4g, effective rank %.4g (PR %.4g), ODD>=1 for %.1f%% of features, "
            "mean pairwise cosine %.4g",
            mod,
            ratio,
            er,
            pr,
            100 * det["odd"]["frac_ge_1"],
            cone,
        )
        plot[mod] = {"var": var, "odd": odd, "eig": eig, "effective_rank": er, "participation_ratio": pr}
        cols[f"variance_{mod}"] = var
        cols[f"odd_{mod}"] = odd
        cols[f"eigenvalue_{mod}"] = eig

        if p["whiten"]:
            w_mat, lam = whitening_from_eigh(lam_all, u_all, float(p["eig_rtol"]))
            k = lam.size
            if k < d:
                log.warning(
                    "%s: covariance has %d of %d directions above rtol %g; whitening keeps %d",
                    mod,
                    k,
                    d,
                    p["eig_rtol"],
                    k,
                )
            degenerate = acc.n <= d
            if degenerate:
                log.warning(
                    "%s: N = %d <= d = %d: the sample covariance is singular and every whitened "
                    "row has the same norm; the normality checks are not meaningful",
                    mod,
                    acc.n,
                    d,
                )
            s2, s4, zn = np.zeros(k), np.zeros(k), []
            w32 = np.ascontiguousarray(w_mat.T, dtype=np.float32)
            for x in iter_embedding_chunks(path, mod, chunk):
                # centred in float64, projected in float32 (half the time of the O(N·d·k) product;
                # z has unit variance, so float32 keeps ~7 digits), sums accumulated in float64
                z = ((x - acc.mean).astype(np.float32) @ w32).astype(np.float64)
                z *= z
                s2 += z.sum(axis=0)
                zn.append(np.sqrt(z.sum(axis=1)))
                z *= z
                s4 += z.sum(axis=0)
            zn = np.concatenate(zn)
            kurt = excess_kurtosis(s2 / acc.n, s4 / acc.n)
            ks = ks_chi(zn, k) if k > 0 else None
            ho = ks_chi_heldout(sample, int(p.get("seed", 0)), float(p["eig_rtol"]))
            det["whitening"] = {
                "method": "PCA whitening z = Lambda^-1/2 U^T (v - m), eigen-directions with "
                "lambda > eig_rtol * lambda_max",
                "kept_dims": int(k),
                "degenerate": bool(degenerate),
                "mean_norm": float(zn.mean()),
                "var_norm": float(zn.var()),
                "chi_mean": chi_mean(k) if k else None,
                "chi_var": float(k - chi_mean(k) ** 2) if k else None,
                "ks_statistic_vs_chi": ks[0] if ks else None,
                "ks_pvalue_vs_chi": ks[1] if ks else None,
                "ks_stat_heldout": ho[0] if ho else None,
                "ks_p_heldout": ho[1] if ho else None,
                "ks_calibration": "ks_p_heldout is the calibrated test (whitening fitted on a seeded random half of "
                "at most null_max_rows rows, the other half tested); ks_pvalue_vs_chi is "
                "in-sample and uncalibrated (too small even for exactly Gaussian data)",
                "excess_kurtosis": {**_quantiles(kurt), "mean_abs": float(np.mean(np.abs(kurt)))},
                "note": "for a multivariate normal ||z|| ~ chi(kept_dims) and every axis has excess kurtosis 0",
            }
            log.info(
                "%s whitened: mean ||z|| %.4g (chi mean %.4g), KS %.3g, median excess kurtosis %.3g",
                mod,
                zn.mean(),
                chi_mean(k) if k else float("nan"),
                ks[0] if ks else float("nan"),
                np.median(kurt),
            )
            plot[mod].update(whitened_norm=zn, kurtosis=kurt, kept_dims=k, degenerate=degenerate)
            kc = np.full(d, np.nan)
            kc[:k] = kurt
            cols[f"whitened_kurtosis_{mod}"] = kc
        details[mod] = det
    ai, at = accs["image"], accs["text"]
    angle = angle_deg(ai.mean, at.mean)
    summary["mean_angle_deg"] = angle
    details["mean_angle_deg"] = angle
    details["mean_gap_norm"] = float(np.linalg.norm(ai.mean - at.mean))
    details["mean_cross_cosine"] = mean_cross_cosine(ai.sum_unit, ai.n_unit, at.sum_unit, at.n_unit)
    details["definitions"] = {
        "covariance": "population covariance (ddof 0)",
        "odd": "Eq. 6: sum_{k != l} |C_lk| / C_ll",
        "effective_rank": "exp of the Shannon entropy of the normalised eigenvalues (Roy & Vetterli 2007)",
        "participation_ratio": "(sum lambda)^2 / sum lambda^2",
        "mean_to_std_ratio": "||m|| / ||sigma||, ||sigma|| = sqrt(tr C)",
        "mean_pairwise_cosine": "mean cos over pairs j != k of one modality, (||sum v^||^2 - N) / (N (N - 1))",
        "csv": "per-feature columns: variance_*, odd_*; per-rank columns (index = rank, largest first): "
        "eigenvalue_*, whitened_kurtosis_* (principal axis)",
    }
    log.info("angle between the modality means %.2f deg", angle)
    return StageResult(summary, details, cols, plot)


def compute_origin_distance(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """EuCLIP Fig. 2: per modality, ‖v‖ (distance from the origin, raw) and (1 − cos(v, [ROOT])) / 2.

    Pass 1 (O(N·d)): raw norms and Σ v̂ per modality → [ROOT].  Pass 2 (O(N·d)): cosine distances.
    """
    log = log or _LOG
    _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    thr = float(p["near_root_threshold"])
    accs = {}
    for mod in MODALITIES:
        accs[mod], _ = _moments(path, mod, chunk, keep_norms=True)
        _log_zero(accs[mod], mod, log)
    ai, at = accs["image"], accs["text"]
    root = root_vector(ai.sum_unit, ai.n_unit, at.sum_unit, at.n_unit)
    summary = {"near_root_threshold": thr, "root_distance_form": ROOT_DISTANCE_FORM}
    details = {
        "root_norm": float(np.linalg.norm(root)),
        "definitions": {
            "origin_distance": "||v|| of the raw embedding",
            "root": "mean of all L2-normalised image and text embeddings together",
            "root_cosine_distance": ROOT_DISTANCE_FORM + " (EuCLIP Fig. 2's scaled cosine distance)",
            "frac_near_root": "fraction of rows with root_cosine_distance <= near_root_threshold",
        },
    }
    cols = {"modality": [], "row": [], "origin_distance": [], "root_cosine_distance": []}
    plot = {"near_root_threshold": thr}
    for mod in MODALITIES:
        acc = accs[mod]
        cd = np.concatenate([scaled_cosine_distance(x, root) for x in iter_embedding_chunks(path, mod, chunk)])
        norms = acc.norms
        ok = np.isfinite(cd)
        frac = float(np.mean(cd[ok] <= thr)) if ok.any() else float("nan")
        summary[mod] = {
            "median_origin_distance": float(np.median(norms)),
            "median_root_cosine_distance": float(np.median(cd[ok])) if ok.any() else float("nan"),
            "frac_near_root": frac,
        }
        details[mod] = {
            "n": acc.n,
            "origin_distance": _quantiles(norms),
            "root_cosine_distance": _quantiles(cd),
            "frac_near_root": frac,
            "zero_norm_rows": acc.n_zero,
        }
        log.info(
            "%s: median ||v|| %.4g, median cosine distance from ROOT %.4g, %.1f%% within %g",
            mod,
            summary[mod]["median_origin_distance"],
            summary[mod]["median_root_cosine_distance"],
            100 * frac,
            thr,
        )
        cols["modality"].append(np.full(acc.n, mod, dtype=object))
        cols["row"].append(np.arange(acc.n))
        cols["origin_distance"].append(norms)
        cols["root_cosine_distance"].append(cd)
        plot[mod] = {"origin_distance": norms, "root_cosine_distance": cd[ok]}
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    return StageResult(summary, details, cols, plot)
