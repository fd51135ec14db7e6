"""KL divergence estimators, one family for every stage (nats, natural logarithms).

* :func:`histogram_kl`: KL(P‖Q) of two histograms on the same bins, with additive smoothing —
  ``eps`` added to every bin *probability* (separability, §4: ``kl_eps``) or ``pseudocount`` added to
  every bin *count* (kl_matching, Fig. 11: ``pseudocount``).  :func:`sample_histogram_kl` bins two
  samples on shared equal-width bins first (:func:`shared_bins`) and calls it.
* :func:`density_histogram_kl`: the same over the bin width (a hypothesis for the paper's KL ≈ 301).
* :func:`gaussian_kl`: the closed form between two normal distributions (separability's headline).
* :func:`kl_divergence`: Σ_b p_b log(p_b / q_b) of two discrete distributions, which all of them share.
"""

from __future__ import annotations

import numpy as np


def kl_divergence(p, q) -> float:
    """KL(P‖Q) = Σ_b p_b log(p_b / q_b) in nats for discrete distributions (terms with p_b = 0 contribute 0;
    inf when some q_b = 0 < p_b)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    nz = p > 0
    if np.any(q[nz] <= 0):
        return float("inf")
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def bin_probabilities(counts, *, pseudocount: float = 0.0, eps: float = 0.0) -> np.ndarray:
    """Bin probabilities of a histogram with additive smoothing.

    ``(counts + pseudocount) / Σ(counts + pseudocount)``; then, with ``eps > 0``, ``eps`` added to every
    probability and the result renormalised.  Raises ``ValueError`` when the histogram holds no mass.
    """
    c = np.asarray(counts, dtype=np.float64) + pseudocount
    total = c.sum()
    if not total > 0:
        raise ValueError("empty histogram and zero pseudocount: probabilities undefined")
    p = c / total
    if eps:
        p = p + eps
        p = p / p.sum()
    return p


def histogram_kl(p_counts, q_counts, eps: float = 0.0, *, pseudocount: float = 0.0) -> float:
    """KL(P‖Q) = Σ_b p_b log(p_b / q_b) in nats between two histograms on the *same* bins.

    The counts become probabilities by :func:`bin_probabilities` (``pseudocount`` per bin count, then
    ``eps`` per bin probability, both histograms alike).  With ``eps`` bins empty in Q but not in P give a
    large, finite value: two disjoint distributions give ≈ log(1/eps), which depends on ``eps`` and the
    binning (:func:`histogram_kl_saturation` flags it).  NaN when a histogram holds no mass.
    """
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape:
        raise ValueError(f"histograms differ in shape: {p.shape} vs {q.shape}")
    if not pseudocount > 0 and (p.sum() <= 0 or q.sum() <= 0):
        return float("nan")
    return kl_divergence(
        bin_probabilities(p, pseudocount=pseudocount, eps=eps), bin_probabilities(q, pseudocount=pseudocount, eps=eps)
    )


def density_histogram_kl(p_counts, q_counts, width: float, eps: float = 0.0) -> float:
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


# ---------------------------------------------------------------------------
# histograms of samples (Figs. 10–11)
# ---------------------------------------------------------------------------
def shared_bins(*samples: np.ndarray, bins: int = 50) -> np.ndarray:
    """``bins + 1`` equal-width edges spanning the union of all samples' ranges."""
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    vals = [np.asarray(s, dtype=np.float64) for s in samples if np.size(s)]
    if not vals:
        raise ValueError("no samples to bin")
    lo = min(float(v.min()) for v in vals)
    hi = max(float(v.max()) for v in vals)
    if hi <= lo:  # all values equal: a unit-width bin around them
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def histogram_counts(sample: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``sample`` in the bins ``edges``; values outside the edges are clipped into the end bins."""
    sample = np.clip(np.asarray(sample, dtype=np.float64), edges[0], edges[-1])
    return np.histogram(sample, bins=edges)[0]


def histogram_probs(sample: np.ndarray, edges: np.ndarray, pseudocount: float = 0.5) -> np.ndarray:
    """Bin probabilities (counts + ``pseudocount`` per bin, normalised); values outside the edges are clipped in."""
    return bin_probabilities(histogram_counts(sample, edges), pseudocount=pseudocount)


def sample_histogram_kl(p_sample: np.ndarray, q_sample: np.ndarray, bins: int = 50, pseudocount: float = 0.5) -> float:
    """KL(P‖Q) between two samples: :func:`histogram_kl` of their histograms on shared bins
    (:func:`shared_bins`) with ``pseudocount`` added to every bin count of both."""
    edges = shared_bins(p_sample, q_sample, bins=bins)
    return histogram_kl(histogram_counts(p_sample, edges), histogram_counts(q_sample, edges), pseudocount=pseudocount)
