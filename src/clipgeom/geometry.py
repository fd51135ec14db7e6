"""Geometry of the double ellipsoid (paper §3–§4) and the EuCLIP origin/[ROOT] distances: the equations.

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

Everything here is pure: one function per equation/quantity, taking small arrays (means,
variances, a covariance, eigenvalues, histogram counts) and returning numbers — easy to test
by hand — plus the streaming accumulators (:class:`MomentAccumulator`, :class:`FeatureHistograms`)
that merge row chunks.  The KL estimators of Fig. 2 are in :mod:`clipgeom.kl`.  The four stages
that read an embeddings.h5 in row chunks and assemble their metrics (``compute_separability``,
``compute_thin_shell``, ``compute_covariance``, ``compute_origin_distance``) are in
:mod:`clipgeom.stages.geometry`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from clipgeom.grids import inclusive_grid


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
    return inclusive_grid(0.0, stop, step, 12)


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


def eigh_one_thread(cov):
    """numpy's eigh with BLAS on one thread: for d ~ 512 that is as fast, and multithreaded LAPACK
    slows down by orders of magnitude when the cores are oversubscribed (parallel Snakemake jobs)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return np.linalg.eigh(np.asarray(cov, float))


def eigen_spectrum(cov) -> np.ndarray:
    """Eigenvalues of the symmetric C, largest first (tiny negative round-off set to 0)."""
    return np.clip(eigh_one_thread(cov)[0][::-1], 0.0, None)


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
# Whitening and its normality checks (paper supplementary)
# ---------------------------------------------------------------------------
def whitening_matrix(cov, rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    """PCA whitening: W = Λ_k^{-1/2} U_kᵀ (k × d) so that z = W x̃ has identity covariance.

    Only eigen-directions with λ > rtol · λ_max are kept (a rank-deficient C, e.g. N ≤ d,
    cannot be whitened in its null space).  Returns ``(W, kept eigenvalues)``, largest first.
    """
    lam, u = eigh_one_thread(cov)
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
