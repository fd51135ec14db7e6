"""Figures of the geometry stages (paper Figs 2–5, supplementary whitening, EuCLIP Fig. 2).

Each function takes computed arrays (see :mod:`clipgeom.geometry`) and returns a matplotlib
figure; the scripts save it with :func:`clipgeom.outputs.save_figure`.
"""

from __future__ import annotations

import numpy as np

from clipgeom.plots import style

COLORS = style.MODALITY
# Filled histograms are drawn with histtype="stepfilled": one polygon per series, the same pixels as
# the default bars (no edges), without one Rectangle per bin (which made building and drawing a
# 60-bin, two-series histogram about twice as slow).
SINGLE = dict(width=4.8, height=3.0)  # one panel
ROW = dict(width=style.PAGE_WIDTH, height=2.8)  # panels side by side


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
    sep = np.asarray(sep, float)
    order = np.argsort(-sep, kind="stable")
    fig, axes = style.subplots(**SINGLE)
    ax = axes[0, 0]
    ax.plot(np.arange(1, sep.size + 1), sep[order], color="k", lw=1.2, label="Sep(ℓ), sorted")
    ax.axhline(
        tag_threshold,
        color="firebrick",
        ls="--",
        lw=1,
        label=f"tag threshold {tag_threshold:g} ({int(np.sum(sep > tag_threshold))} features above)",
    )
    for r in range(min(3, sep.size)):
        ax.annotate(f"{order[r]}", (r + 1, sep[order[r]]), textcoords="offset points", xytext=(6, -2), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("rank (log scale)")
    ax.set_ylabel("Sep(ℓ) (Eq. 5)")
    style.legend(ax, loc="upper right")
    style.suptitle(fig, "Feature separability, sorted (Fig. 3)", label)
    return fig


def plot_top_mean_std(mean_over_std: dict, k: int = 10, label: str = ""):
    """Fig. 3 (right): per modality, the k features with the largest |mean| / std."""
    fig, axes = style.subplots(1, 2, **ROW)
    for ax, mod in zip(axes[0], ("image", "text"), strict=False):
        v = np.asarray(mean_over_std[mod], float)
        top = np.lexsort((np.arange(v.size), -v))[:k]
        ax.bar(np.arange(top.size), v[top], color=COLORS[mod])
        ax.set_xticks(np.arange(top.size))
        ax.set_xticklabels([str(f) for f in top], rotation=60)
        ax.set_xlabel("feature (0-based)")
        ax.set_ylabel("|m(ℓ)| / σ(ℓ)")
        ax.set_title(f"{mod}: top {top.size}", color=COLORS[mod])
    style.suptitle(fig, "Features far from zero relative to their spread", label)
    return fig


def plot_top_feature_histograms(features, edges, counts: dict, kl, label: str = ""):
    """Fig. 2 (histograms): image vs text distribution of the most separable features."""
    n = len(features)
    ncols = min(max(n, 1), 4)
    nrows = max(1, -(-n // ncols))
    fig, axes = style.subplots(nrows, ncols, width=style.PAGE_WIDTH, height=2.3 * nrows + 0.4)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.set_visible(False)
            continue
        for mod in ("image", "text"):
            _hist_from_counts(
                ax, edges[j], _density(counts[mod][j], edges[j]), fill=True, alpha=0.45, color=COLORS[mod], label=mod
            )
        ax.set_title(f"feature {int(features[j])} (KL {kl[j]:.3g})")
        ax.set_xlabel("value")
        ax.set_ylabel("density")
        if j == 0:
            style.legend(ax, loc="upper left")
    if n == 0:
        axes[0, 0].set_visible(True)
        style.note(axes[0, 0], "no feature to show")
    style.suptitle(fig, "Most separable features (Fig. 2)", label)
    return fig


def plot_svm_top2(x2, y, features, w, b, accuracy: float, label: str = "", max_points: int = 20000, seed: int = 0):
    """Fig. 2 (scatter): the two most separable features and the linear SVM boundary w·x + b = 0."""
    x2 = np.asarray(x2, float)
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    idx = np.arange(len(y))
    if idx.size > max_points:
        idx = np.sort(rng.choice(idx.size, max_points, replace=False))
    fig, axes = style.subplots(width=4.6, height=4.0)
    ax = axes[0, 0]
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
    ax.set_title(f"held-out accuracy {100 * accuracy:.2f}%")
    style.legend(ax, loc="best", markerscale=3)
    style.suptitle(fig, "Linear SVM on the 2 most separable features (Fig. 2)", label)
    return fig


# ---------------------------------------------------------------------------
# thin shell
# ---------------------------------------------------------------------------
def plot_centred_features(per_mod: dict, n_features: int, label: str = ""):
    """Fig. 4 (left): histograms of the first features of x̃ = v − m, one small panel per feature and modality
    (rows: image, then text; a shared x range per modality; the dotted line is 0)."""
    n = max(int(n_features), 1)
    cols = min(n, 5)
    rows_per_mod = -(-n // cols)
    fig, axes = style.subplots(2 * rows_per_mod, cols, width=style.PAGE_WIDTH, height=1.45 * 2 * rows_per_mod + 0.7)
    for m_i, mod in enumerate(("image", "text")):
        e, c = per_mod[mod]["feat_edges"], per_mod[mod]["feat_counts"]
        lo = min(float(np.min(e[j])) for j in range(n))
        hi = max(float(np.max(e[j])) for j in range(n))
        for j in range(n):
            ax = axes[m_i * rows_per_mod + j // cols, j % cols]
            _hist_from_counts(ax, e[j], _density(c[j], e[j]), color=COLORS[mod], lw=1)
            ax.axvline(0.0, color=style.REFERENCE, ls=":", lw=0.8)
            ax.set_xlim(lo, hi)
            ax.set_title(f"{mod}, ℓ = {j}", color=COLORS[mod], fontsize=8, pad=2)
            ax.set_ylabel("density", fontsize=8, labelpad=1)
            ax.set_xlabel(f"x̃({j})", fontsize=8, labelpad=1)
        for j in range(n, rows_per_mod * cols):  # unused panels of a short last row
            axes[m_i * rows_per_mod + j // cols, j % cols].set_visible(False)
    style.suptitle(fig, f"The first {n} centred features x̃(ℓ) = v(ℓ) − m(ℓ) (Fig. 4)", label)
    return fig


def plot_norms(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 4 (right): ‖x̃‖ (centred) and ‖v‖ (raw) per modality: a thin shell, no mass near 0."""
    fig, axes = style.subplots(1, 2, **ROW)
    for ax, kind, title in (
        (axes[0, 0], "norm_centred", "‖x̃‖ = ‖v − m‖ (centred)"),
        (axes[0, 1], "norm_raw", "‖v‖ (raw)"),
    ):
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
                ax.axvline(per_mod[mod]["rms_norm"], color=COLORS[mod], ls="--", lw=1, label=f"{mod}: √tr C")
        ax.set_xlabel("norm")
        ax.set_ylabel("density")
        ax.set_title(title)
        style.legend(ax, loc="upper left")
    style.suptitle(fig, "Norms of the centred and the raw embeddings (Fig. 4)", label)
    return fig


# ---------------------------------------------------------------------------
# covariance
# ---------------------------------------------------------------------------
def _two_hist(values: dict, xlabel: str, title: str, bins: int, log_x=False, vline=None, label: str = ""):
    fig, axes = style.subplots(**SINGLE)
    ax = axes[0, 0]
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
        style.log_ticks(ax, allv)
    if vline is not None:
        x, what = vline
        ax.axvline(x, color="k", ls="--", lw=1, label=what)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("number of features")
    style.legend(ax, loc="upper right")
    style.suptitle(fig, title, label)
    return fig


def plot_variance_hist(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 5 (left): per-feature variance σ²(ℓ) — a long tail: an ellipsoid, not a sphere."""
    return _two_hist(
        {m: per_mod[m]["var"] for m in ("image", "text")},
        "variance σ²(ℓ) (log scale)",
        "Per-feature variance (Fig. 5)",
        bins,
        log_x=True,
        label=label,
    )


def plot_odd_hist(per_mod: dict, bins: int = 60, label: str = ""):
    """Fig. 5 (right): off-diagonal dominance ODD(ℓ) (Eq. 6); ≥ 1 (dashed) means strong correlations."""
    return _two_hist(
        {m: per_mod[m]["odd"] for m in ("image", "text")},
        r"ODD($\ell$) $= \sum_{k\neq\ell}|C_{\ell k}|/C_{\ell\ell}$ (Eq. 6)",
        "Off-diagonal dominance (Fig. 5)",
        bins,
        vline=(1.0, "ODD = 1: off-diagonal mass equals the variance"),
        label=label,
    )


def plot_eigen_spectrum(per_mod: dict, label: str = ""):
    """Eigenvalues of C, largest first, with effective rank and participation ratio."""
    fig, axes = style.subplots(**SINGLE)
    ax = axes[0, 0]
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
    style.legend(ax, loc="lower left")
    style.suptitle(fig, "Covariance eigen-spectrum", label)
    return fig


def plot_whitening(per_mod: dict, bins: int = 60, label: str = ""):
    """Supplementary: ‖z‖ of the whitened vectors against the chi(k) density a multivariate
    normal would give (drawn once per distinct k), and the per-axis excess kurtosis (0 for a normal).

    With N ≤ d (``degenerate``) every whitened row has the same norm: that modality's norms are not
    drawn (a spike says nothing); the panel says so instead."""
    import math

    from clipgeom.geometry import chi_mean

    def chi_pdf(t, k):  # density of chi(k), in logs: x^(k-1) e^(-x²/2) / (2^(k/2-1) Γ(k/2))
        t = np.asarray(t, float)
        with np.errstate(divide="ignore"):
            logp = (k - 1) * np.log(t) - t * t / 2 - (k / 2 - 1) * math.log(2) - math.lgamma(k / 2)
        return np.where(t > 0, np.exp(logp), 0.0)

    fig, axes = style.subplots(1, 2, **ROW)
    ax = axes[0, 0]
    mods = ("image", "text")
    degenerate = [m for m in mods if per_mod[m].get("degenerate")]
    shown = [m for m in mods if m not in degenerate]
    lo, hi = np.inf, -np.inf
    for mod in shown:
        zn = _finite(per_mod[mod]["whitened_norm"])
        k = int(per_mod[mod]["kept_dims"])
        if zn.size:
            lo, hi = min(lo, zn.min()), max(hi, zn.max())
        if k > 0:
            mu = chi_mean(k)
            sd = math.sqrt(max(k - mu * mu, 0.0))
            lo, hi = min(lo, max(mu - 5 * sd, 0.0)), max(hi, mu + 5 * sd)
    edges = np.linspace(lo, hi, bins + 1) if np.isfinite(lo) and hi > lo else bins
    for mod in shown:
        zn = _finite(per_mod[mod]["whitened_norm"])
        k = int(per_mod[mod]["kept_dims"])
        ax.hist(
            zn, bins=edges, histtype="stepfilled", density=True, alpha=0.5, color=COLORS[mod], label=f"{mod} (k = {k})"
        )
    ks = sorted({int(per_mod[m]["kept_dims"]) for m in shown if int(per_mod[m]["kept_dims"]) > 0})
    for k, ls in zip(ks, ("--", ":"), strict=False):  # one chi curve per distinct k
        t = np.linspace(lo, hi, 400)
        ax.plot(t, chi_pdf(t, k), color="k", ls=ls, lw=1, label=f"χ({k})")
    why = " and ".join(
        f"{m}: N = {len(per_mod[m]['whitened_norm'])} ≤ d = {len(per_mod[m]['var'])}" for m in degenerate
    )
    if shown:
        ax.set_xlabel("‖z‖ (whitened)")
        ax.set_ylabel("density")
        style.legend(ax, loc="upper right")
        if degenerate:
            ax.text(0.02, 0.97, f"{why}: not drawn", transform=ax.transAxes, va="top", color="0.3")
    else:
        style.note(
            ax,
            f"{why}: the sample covariance is singular and every whitened row has the same norm, so "
            "there is no distribution to compare with χ",
        )
    ax.set_title("whitened norms vs χ(k)")
    ax = axes[0, 1]
    allk = np.concatenate([_finite(per_mod[m]["kurtosis"]) for m in shown]) if shown else np.zeros(0)
    edges = np.linspace(allk.min(), allk.max(), bins + 1) if allk.size and allk.max() > allk.min() else bins
    for mod in shown:
        ax.hist(
            _finite(per_mod[mod]["kurtosis"]),
            bins=edges,
            histtype="stepfilled",
            alpha=0.5,
            color=COLORS[mod],
            label=mod,
        )
    if shown:
        ax.axvline(0.0, color="k", ls="--", lw=1, label="normal (0)")
        ax.set_xlabel("excess kurtosis per principal axis")
        ax.set_ylabel("number of axes")
        style.legend(ax, loc="upper right")
    else:
        style.note(ax, f"{why}: not meaningful")
    ax.set_title("whitened per-axis kurtosis")
    style.suptitle(fig, "How far each whitened modality is from a multivariate normal", label)
    return fig


# ---------------------------------------------------------------------------
# origin distance (EuCLIP Fig. 2)
# ---------------------------------------------------------------------------
def plot_origin_distance(per_mod: dict, bins: int = 60, label: str = ""):
    """Distribution of ‖v‖, the distance of each raw embedding from the origin."""
    fig, axes = style.subplots(**SINGLE)
    ax = axes[0, 0]
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
    style.legend(ax, loc="upper right")
    style.suptitle(fig, "Distance from the origin (EuCLIP Fig. 2)", label)
    return fig


def plot_root_distance(per_mod: dict, threshold: float, bins: int = 60, label: str = ""):
    """Distribution of EuCLIP's scaled cosine distance (1 − cos(v, [ROOT])) / 2 ∈ [0, 1] per modality;
    most mass below ``threshold`` = the cone."""
    fig, axes = style.subplots(**SINGLE)
    ax = axes[0, 0]
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
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("scaled cosine distance (1 − cos(v, [ROOT])) / 2")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylabel("density")
    style.legend(ax, loc="upper right")
    style.suptitle(fig, "Cosine distance from [ROOT] (EuCLIP)", label)
    return fig


def placeholder(message: str):
    """A figure that only says why there is nothing to show (a declared output that was switched off)."""
    fig, axes = style.subplots(width=5.0, height=1.4)
    ax = axes[0, 0]
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=style.RC["axes.labelsize"])
    return fig
