"""Figures of the loss stages: the alpha sweep (paper Fig. 6 and its supplementary text-shift version,
plus EuCLIP's Euclidean geometries) and the blur simulation (Fig. 7).

Each function takes computed arrays (see :mod:`clipgeom.loss`, :mod:`clipgeom.blur`) and returns a
matplotlib figure; the scripts save it with :func:`clipgeom.outputs.save_figure`.
"""

from __future__ import annotations

import numpy as np

SUBSET_STYLE = {
    "all": dict(color="k", label="all pairs"),
    "correct": dict(color="tab:green", label="correctly classified"),
    "misclassified": dict(color="tab:red", label="misclassified"),
}
SHIFT_LABEL = {"image": "image shift  $v_i - \\alpha m_i$", "text": "text shift  $v_t - \\alpha m_t$"}
GEOMETRY_LABEL = {
    "cosine": "cosine (CLIP)",
    "euclidean": "$-\\|x-y\\|$ (EuCLIP)",
    "sq_euclidean": "$-\\|x-y\\|^2$ (EuCLIP, squared)",
}


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _argmin(alphas, y):
    y = np.asarray(y, float)
    ok = np.isfinite(y)
    if not ok.any():
        return None
    i = np.flatnonzero(ok)[np.argmin(y[ok])]
    return alphas[i], y[i]


def _mark_min(ax, alphas, y, color):
    m = _argmin(alphas, y)
    if m is not None:
        ax.plot([m[0]], [m[1]], "o", color=color, ms=5, zorder=5)


def _vline0(ax):
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":")


def plot_loss_curves(alphas, curves: dict, shifts=("image", "text"), label: str = "", scale: float | None = None):
    """Fig. 6: the CLIP loss (Eq. 7) against alpha (Eq. 9) for all, correctly classified and misclassified
    pairs, the change of its alignment/uniformity terms (Eq. 8) and the retrieval accuracy; one row per
    shifted modality. ``curves[shift]`` as returned by :func:`clipgeom.loss.curves_from_terms`."""
    plt = _plt()
    alphas = np.asarray(alphas, float)
    shifts = [s for s in shifts if s in curves]
    fig, axes = plt.subplots(max(len(shifts), 1), 5, figsize=(18, 3.3 * max(len(shifts), 1)), squeeze=False)
    for row, s in zip(axes, shifts, strict=False):
        c = curves[s]
        for ax, sub in zip(row[:3], ("all", "correct", "misclassified"), strict=False):
            st = SUBSET_STYLE[sub]
            y = np.asarray(c[f"loss_{sub}"], float)
            ax.plot(alphas, y, "-", color=st["color"], lw=1.5)
            _mark_min(ax, alphas, y, st["color"])
            _vline0(ax)
            n = np.asarray(c["n_pairs" if sub == "all" else f"n_{sub}"])
            ax.set_title(f"{st['label']} (n at α=0: {int(n[np.argmin(np.abs(alphas))])})", fontsize=9)
            ax.set_xlabel("α")
            ax.set_ylabel("loss (Eq. 7)")
        ax = row[3]
        i0 = int(np.argmin(np.abs(alphas)))
        for q, ls, lab in (("alignment_loss", "-", "−alignment = −E[s_jj]"), ("uniformity", "--", "uniformity")):
            y = np.asarray(c[f"{q}_all"], float)
            ax.plot(alphas, y - y[i0], ls, color="tab:purple" if q == "alignment_loss" else "tab:olive", label=lab)
        _vline0(ax)
        ax.set_title("Eq. 8 terms (all pairs), change from α=0", fontsize=9)
        ax.set_xlabel("α")
        ax.legend(fontsize=7)
        ax = row[4]
        ax.plot(alphas, c["accuracy_i2t"], "-", color="tab:blue", label="image→text R@1")
        t2i = np.asarray(c["accuracy_t2i"], float)
        if np.isfinite(t2i).any():
            ax.plot(alphas, t2i, "--", color="tab:orange", label="text→image R@1")
        _vline0(ax)
        ax.set_ylim(0, 1)
        ax.set_title("retrieval accuracy in the batch", fontsize=9)
        ax.set_xlabel("α")
        ax.legend(fontsize=7)
        row[0].annotate(SHIFT_LABEL[s], (0.02, 0.96), xycoords="axes fraction", va="top", fontsize=8, color="0.25")
    if not shifts:
        axes[0, 0].text(0.5, 0.5, "no shift computed", ha="center", transform=axes[0, 0].transAxes)
    temp = f", logit scale {scale:g}" if scale is not None else ""
    fig.suptitle(f"CLIP loss under a mean shift (Fig. 6){temp} {label}".strip(), fontsize=11)
    fig.tight_layout()
    return fig


def plot_geometry_curves(
    alphas, curves: dict, geometries, shifts=("image", "text"), label: str = "", scale: float | None = None
):
    """The alpha sweep under each geometry (EuCLIP's Euclidean logits beside cosine): per geometry the loss
    change from alpha = 0 for all/correct/misclassified pairs, per shift, and the retrieval accuracy.
    ``curves[(geometry, shift)]`` as returned by :func:`clipgeom.stages.loss.alpha_sweep`."""
    plt = _plt()
    alphas = np.asarray(alphas, float)
    geometries = [g for g in geometries if any((g, s) in curves for s in shifts)]
    nrow = max(len(geometries), 1)
    fig, axes = plt.subplots(nrow, len(shifts) + 1, figsize=(5 * (len(shifts) + 1), 3.2 * nrow), squeeze=False)
    i0 = int(np.argmin(np.abs(alphas)))
    for row, g in zip(axes, geometries, strict=False):
        for ax, s in zip(row, shifts, strict=False):
            c = curves.get((g, s))
            if c is None:
                ax.set_visible(False)
                continue
            for sub, st in SUBSET_STYLE.items():
                y = np.asarray(c[f"loss_{sub}"], float)
                if not np.isfinite(y[i0]):
                    continue
                dy = y - y[i0]
                ax.plot(alphas, dy, color=st["color"], label=st["label"], lw=1.3)
                _mark_min(ax, alphas, dy, st["color"])
            _vline0(ax)
            ax.set_title(f"{GEOMETRY_LABEL.get(g, g)}: {SHIFT_LABEL[s]}", fontsize=9)
            ax.set_xlabel("α")
            ax.set_ylabel("loss − loss(α=0)")
            ax.legend(fontsize=7)
        ax = row[-1]
        for s, ls in zip(shifts, ("-", "--"), strict=False):
            c = curves.get((g, s))
            if c is not None:
                ax.plot(alphas, c["accuracy_i2t"], ls, color="tab:blue", label=f"image→text R@1, {s} shift")
        _vline0(ax)
        ax.set_ylim(0, 1)
        ax.set_xlabel("α")
        ax.set_title(f"{GEOMETRY_LABEL.get(g, g)}: retrieval accuracy", fontsize=9)
        ax.legend(fontsize=7)
    if not geometries:
        axes[0, 0].text(0.5, 0.5, "no geometry configured", ha="center", transform=axes[0, 0].transAxes)
    temp = f", logit scale {scale:g}" if scale is not None else ""
    fig.suptitle(f"Loss under a mean shift by geometry{temp} {label}".strip(), fontsize=11)
    fig.tight_layout()
    return fig


def plot_blur(settings: dict, bins: int = 50):
    """Fig. 7: histograms of cos(m, v) and cos(v_far, v), at the origin and off-centre.

    histtype="stepfilled": one polygon per series, the same pixels as edgeless bars, far cheaper
    to build and draw than one Rectangle per bin."""
    plt = _plt()
    names = list(settings)
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=False):
        s = settings[name]
        lo = min(s.cos_mean.min(), s.cos_far.min())
        hi = max(s.cos_mean.max(), s.cos_far.max())
        edges = np.linspace(lo, hi, bins + 1)
        ax.hist(
            s.cos_mean,
            bins=edges,
            histtype="stepfilled",
            alpha=0.6,
            color="tab:blue",
            label=f"cos(m, v): mean {s.cos_mean.mean():.3f}",
        )
        ax.hist(
            s.cos_far,
            bins=edges,
            histtype="stepfilled",
            alpha=0.6,
            color="tab:red",
            label=f"cos(v_far, v): mean {s.cos_far.mean():.3f}",
        )
        nz = np.flatnonzero(s.centre)
        where = (
            "origin"
            if nz.size == 0
            else "centre ("
            + ", ".join(f"{s.centre[i]:g}" for i in range(nz.max() + 1))
            + (", 0, …)" if nz.max() + 1 < s.centre.size else ")")
        )
        ax.set_title(f"{name}: {len(s.vectors)} vectors in {s.vectors.shape[1]}-d at {where}", fontsize=9)
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("count")
        ax.legend(fontsize=8)
    fig.suptitle("Similarity to the mean vs. to the least similar vector (Fig. 7)", fontsize=11)
    fig.tight_layout()
    return fig
