"""Figures of the geometry stages (paper Figs 2–5, supplementary whitening, EuCLIP Fig. 2).

Each function takes computed arrays (see :mod:`clipgeom.geometry`) and returns a matplotlib
figure; the scripts save it with :func:`clipgeom.outputs.save_figure`.
"""

from __future__ import annotations

import numpy as np

COLORS = {"image": "tab:blue", "text": "tab:orange"}
# Filled histograms are drawn with histtype="stepfilled": one polygon per series, the same pixels as
# the default bars (no edges), without one Rectangle per bin (which made building and drawing a
# 60-bin, two-series histogram about twice as slow).


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _hist_from_counts(ax, edges, counts, **kw):
    ax.stairs(counts, edges, **kw)


def _density(counts, edges):
    counts = np.asarray(counts, float)
    width = np.diff(edges)
    tot = counts.sum()
    return counts / (tot * width) if tot > 0 else counts


def _finite(a):
    a = np.asarray(a, float)
    return a[np.isfinite(a)]


# ---------------------------------------------------------------------------
# separability
# ---------------------------------------------------------------------------
def plot_sep_sorted(sep, tag_threshold: float, label: str = ""):
    """Fig. 3 (left): Sep(ℓ) of every feature, sorted descending, with the tag threshold."""
    plt = _plt()
    sep = np.asarray(sep, float)
    order = np.argsort(-sep, kind="stable")
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(np.arange(1, sep.size + 1), sep[order], color="k", lw=1.2)
    ax.axhline(
        tag_threshold,
        color="firebrick",
        ls="--",
        lw=1,
        label=f"tag threshold {tag_threshold:g} ({int(np.sum(sep > tag_threshold))} features)",
    )
    for r in range(min(3, sep.size)):
        ax.annotate(f"{order[r]}", (r + 1, sep[order[r]]), textcoords="offset points", xytext=(6, -2), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("rank (log scale)")
    ax.set_ylabel("Sep(ℓ) (Eq. 5)")
    ax.set_title(f"Feature separability, sorted {label}".strip())
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_top_mean_std(mean_over_std: dict, k: int = 10, label: str = ""):
    """Fig. 3 (right): per modality, the k features with the largest |mean| / std."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, mod in zip(axes, ("image", "text"), strict=False):
        v = np.asarray(mean_over_std[mod], float)
        top = np.lexsort((np.arange(v.size), -v))[:k]
        ax.bar(np.arange(top.size), v[top], color=COLORS[mod])
        ax.set_xticks(np.arange(top.size))
        ax.set_xticklabels([str(f) for f in top], rotation=60, fontsize=8)
        ax.set_xlabel("feature (0-based)")
        ax.set_ylabel("|m(ℓ)| / σ(ℓ)")
        ax.set_title(f"{mod}: top {top.size}")
    fig.suptitle(f"Features far from zero relative to their spread {label}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_top_feature_histograms(features, edges, counts: dict, kl, label: str = ""):
    """Fig. 2 (histograms): image vs text distribution of the most separable features."""
    plt = _plt()
    n = len(features)
    fig, axes = plt.subplots(1, max(n, 1), figsize=(3.6 * max(n, 1), 3.2), squeeze=False)
    for j, ax in enumerate(axes[0][:n]):
        for mod in ("image", "text"):
            _hist_from_counts(
                ax, edges[j], _density(counts[mod][j], edges[j]), fill=True, alpha=0.45, color=COLORS[mod], label=mod
            )
        ax.set_title(f"feature {int(features[j])}  (KL {kl[j]:.3g})", fontsize=9)
        ax.set_xlabel("value")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.suptitle(f"Most separable features {label}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_svm_top2(x2, y, features, w, b, accuracy: float, label: str = "", max_points: int = 20000, seed: int = 0):
    """Fig. 2 (scatter): the two most separable features and the linear SVM boundary w·x + b = 0."""
    plt = _plt()
    x2 = np.asarray(x2, float)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))
    if idx.size > max_points:
        idx = np.sort(rng.choice(idx.size, max_points, replace=False))
    fig, ax = plt.subplots(figsize=(5, 4.4))
    for cls, mod in ((0, "image"), (1, "text")):
        s = idx[y[idx] == cls]
        ax.scatter(x2[s, 0], x2[s, 1], s=4, alpha=0.5, color=COLORS[mod], label=mod, rasterized=True, linewidths=0)
    xl = np.array(ax.get_xlim())
    yl = ax.get_ylim()
    w = np.asarray(w, float)
    if abs(w[1]) > 1e-12:
        ax.plot(xl, -(w[0] * xl + b) / w[1], "k--", lw=1.2, label="SVM boundary")
    elif abs(w[0]) > 1e-12:
        ax.axvline(-b / w[0], color="k", ls="--", lw=1.2, label="SVM boundary")
    ax.set_xlim(xl)
    ax.set_ylim(yl)
    ax.set_xlabel(f"feature {int(features[0])}")
    ax.set_ylabel(f"feature {int(features[1])}")
    ax.set_title(f"Linear SVM on 2 features: held-out accuracy {100 * accuracy:.2f}% {label}".strip(), fontsize=9)
    ax.legend(fontsize=8, markerscale=3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# thin shell
# ---------------------------------------------------------------------------
def plot_centred_features(per_mod: dict, n_features: int, label: str = ""):
    """Fig. 4 (left): histograms of the first features of x̃ = v − m, per modality."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    cmap = plt.get_cmap("tab10")
    for ax, mod in zip(axes, ("image", "text"), strict=False):
        e, c = per_mod[mod]["feat_edges"], per_mod[mod]["feat_counts"]
        for j in range(n_features):
            _hist_from_counts(ax, e[j], _density(c[j], e[j]), color=cmap(j % 10), lw=1, label=f"{j}")
        ax.set_title(f"{mod}: first {n_features} centred features")
        ax.set_xlabel("x̃(ℓ)")
        ax.set_ylabel("density")
        ax.legend(fontsize=6, ncol=2, title="feature", title_fontsize=7)
    fig.suptitle(f"Centred features are unimodal around 0 {label}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


def plot_norms(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 4 (right): ‖x̃‖ (centred) and ‖v‖ (raw) per modality: a thin shell, no mass near 0."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, kind, title in ((axes[0], "norm_centred", "‖x̃‖ = ‖v − m‖ (centred)"), (axes[1], "norm_raw", "‖v‖ (raw)")):
        hi = max(float(_finite(per_mod[m][kind]).max(initial=0)) for m in ("image", "text"))
        edges = np.linspace(0.0, hi * 1.05 if hi > 0 else 1.0, bins + 1)
        for mod in ("image", "text"):
            ax.hist(
                _finite(per_mod[mod][kind]),
                bins=edges,
                histtype="stepfilled",
                density=True,
                alpha=0.5,
                color=COLORS[mod],
                label=mod,
            )
            if kind == "norm_centred":
                ax.axvline(per_mod[mod]["rms_norm"], color=COLORS[mod], ls="--", lw=1, label=f"√tr C ({mod})")
        ax.set_xlabel("norm")
        ax.set_ylabel("density")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(f"Thin shell: norms are concentrated away from 0 {label}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# covariance
# ---------------------------------------------------------------------------
def _two_hist(values: dict, xlabel: str, title: str, bins: int, log_x=False, vline=None):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    allv = np.concatenate([_finite(values[m]) for m in ("image", "text")])
    if log_x:
        allv = allv[allv > 0]
        edges = np.geomspace(allv.min(), allv.max() * 1.0001, bins + 1) if allv.size else bins
    else:
        edges = np.linspace(allv.min(), allv.max(), bins + 1) if allv.size and allv.max() > allv.min() else bins
    for mod in ("image", "text"):
        v = _finite(values[mod])
        if log_x:
            v = v[v > 0]
        ax.hist(v, bins=edges, histtype="stepfilled", alpha=0.5, color=COLORS[mod], label=mod)
    if log_x:
        ax.set_xscale("log")
    if vline is not None:
        ax.axvline(vline, color="k", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of features")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_variance_hist(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 5 (left): per-feature variance σ²(ℓ) — a long tail: an ellipsoid, not a sphere."""
    return _two_hist(
        {m: per_mod[m]["var"] for m in ("image", "text")},
        "variance σ²(ℓ) (log scale)",
        f"Per-feature variance {label}".strip(),
        bins,
        log_x=True,
    )


def plot_odd_hist(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 5 (right): off-diagonal dominance ODD(ℓ) (Eq. 6); ≥ 1 (dashed) means strong correlations."""
    return _two_hist(
        {m: per_mod[m]["odd"] for m in ("image", "text")},
        "ODD(ℓ) = Σ_{k≠ℓ}|C_ℓk| / C_ℓℓ",
        f"Off-diagonal dominance {label}".strip(),
        bins,
        vline=1.0,
    )


def plot_eigen_spectrum(per_mod: dict, label: str = ""):
    """Eigenvalues of C, largest first, with effective rank and participation ratio."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for mod in ("image", "text"):
        e = np.asarray(per_mod[mod]["eig"], float)
        pos = e > (e[0] * 1e-12 if e.size else 0)
        ax.plot(
            np.arange(1, e.size + 1)[pos],
            e[pos],
            color=COLORS[mod],
            label=f"{mod}: eff. rank {per_mod[mod]['effective_rank']:.1f}, "
            f"PR {per_mod[mod]['participation_ratio']:.1f}",
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("index (largest first)")
    ax.set_ylabel("eigenvalue of C")
    ax.set_title(f"Covariance eigen-spectrum {label}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_whitening(per_mod: dict, bins: int = 60, label: str = ""):
    """Supplementary: ‖z‖ of the whitened vectors against the chi(k) density a multivariate
    normal would give, and the per-axis excess kurtosis (0 for a normal)."""
    import math

    from clipgeom.geometry import chi_mean

    def chi_pdf(t, k):  # density of chi(k), in logs: x^(k-1) e^(-x²/2) / (2^(k/2-1) Γ(k/2))
        t = np.asarray(t, float)
        with np.errstate(divide="ignore"):
            logp = (k - 1) * np.log(t) - t * t / 2 - (k / 2 - 1) * math.log(2) - math.lgamma(k / 2)
        return np.where(t > 0, np.exp(logp), 0.0)

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    lo, hi = np.inf, -np.inf
    for mod in ("image", "text"):
        zn = _finite(per_mod[mod]["whitened_norm"])
        k = int(per_mod[mod]["kept_dims"])
        if zn.size:
            lo, hi = min(lo, zn.min()), max(hi, zn.max())
        if k > 0:
            mu = chi_mean(k)
            sd = math.sqrt(max(k - mu * mu, 0.0))
            lo, hi = min(lo, max(mu - 5 * sd, 0.0)), max(hi, mu + 5 * sd)
    edges = np.linspace(lo, hi, bins + 1) if np.isfinite(lo) and hi > lo else bins
    degenerate = []
    for mod in ("image", "text"):
        zn = _finite(per_mod[mod]["whitened_norm"])
        k = int(per_mod[mod]["kept_dims"])
        if per_mod[mod].get("degenerate"):
            degenerate.append(mod)
        ax.hist(
            zn, bins=edges, histtype="stepfilled", density=True, alpha=0.5, color=COLORS[mod], label=f"{mod} (k = {k})"
        )
        if k > 0:
            t = np.linspace(lo, hi, 400)
            ax.plot(t, chi_pdf(t, k), color=COLORS[mod], ls="--", lw=1, label=f"chi({k})")
    ax.set_xlabel("‖z‖ (whitened)")
    ax.set_ylabel("density")
    ax.set_title(
        "Whitened norms vs chi" + (f" — N ≤ d for {', '.join(degenerate)}: degenerate" if degenerate else ""),
        fontsize=9,
    )
    ax.legend(fontsize=7)
    ax = axes[1]
    allk = np.concatenate([_finite(per_mod[m]["kurtosis"]) for m in ("image", "text")])
    edges = np.linspace(allk.min(), allk.max(), bins + 1) if allk.size and allk.max() > allk.min() else bins
    for mod in ("image", "text"):
        ax.hist(
            _finite(per_mod[mod]["kurtosis"]),
            bins=edges,
            histtype="stepfilled",
            alpha=0.5,
            color=COLORS[mod],
            label=mod,
        )
    ax.axvline(0.0, color="k", ls="--", lw=1, label="normal")
    ax.set_xlabel("excess kurtosis per principal axis")
    ax.set_ylabel("number of axes")
    ax.set_title("Whitened per-axis kurtosis", fontsize=9)
    ax.legend(fontsize=7)
    fig.suptitle(f"How far each whitened modality is from a multivariate normal {label}".strip(), fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# origin distance (EuCLIP Fig. 2)
# ---------------------------------------------------------------------------
def plot_origin_distance(per_mod: dict, bins: int = 60, label: str = ""):
    """Distribution of ‖v‖, the distance of each raw embedding from the origin."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    allv = np.concatenate([_finite(per_mod[m]["origin_distance"]) for m in ("image", "text")])
    lo, hi = float(allv.min()), float(allv.max())
    edges = np.linspace(lo, hi, bins + 1) if hi > lo else np.linspace(lo - 0.5, hi + 0.5, bins + 1)
    for mod in ("image", "text"):
        ax.hist(
            _finite(per_mod[mod]["origin_distance"]),
            bins=edges,
            histtype="stepfilled",
            density=True,
            alpha=0.5,
            color=COLORS[mod],
            label=mod,
        )
    ax.set_xlabel("distance from the origin ‖v‖")
    ax.set_ylabel("density")
    ax.set_title(f"Distance from the origin {label}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_root_distance(per_mod: dict, threshold: float, bins: int = 60, label: str = ""):
    """Distribution of EuCLIP's scaled cosine distance (1 − cos(v, [ROOT])) / 2 ∈ [0, 1] per modality;
    most mass below ``threshold`` = the cone."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    edges = np.linspace(0.0, 1.0, bins + 1)  # (1 - cos)/2 lies in [0, 1]
    for mod in ("image", "text"):
        v = _finite(per_mod[mod]["root_cosine_distance"])
        frac = float(np.mean(v <= threshold)) if v.size else float("nan")
        ax.hist(
            v,
            bins=edges,
            histtype="stepfilled",
            density=True,
            alpha=0.5,
            color=COLORS[mod],
            label=f"{mod} ({100 * frac:.1f}% ≤ {threshold:g})",
        )
    ax.axvline(threshold, color="k", ls="--", lw=1)
    ax.set_xlabel("scaled cosine distance (1 − cos(v, [ROOT])) / 2")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylabel("density")
    ax.set_title(f"Cosine distance from [ROOT] {label}".strip(), fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def placeholder(message: str):
    """A figure that only says why there is nothing to show (a declared output that was switched off)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=10)
    return fig
