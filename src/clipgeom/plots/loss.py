"""Figures of the loss stages: the alpha sweep (paper Fig. 6 and its supplementary text-shift version,
plus EuCLIP's Euclidean geometries) and the blur simulation (Fig. 7).

Each function takes computed arrays (see :mod:`clipgeom.loss`, :mod:`clipgeom.blur`) and returns a
matplotlib figure; the scripts save it with :func:`clipgeom.outputs.save_figure`.
"""

from __future__ import annotations

import numpy as np

from clipgeom.plots import style

SUBSET_STYLE = {
    "all": dict(color=style.SUBSET["all"], label="all pairs", short="all"),
    "correct": dict(color=style.SUBSET["correct"], label="correctly classified", short="correct"),
    "misclassified": dict(color=style.SUBSET["misclassified"], label="misclassified", short="misclassified"),
}
SHIFT_LABEL = {"image": "image shift  $v_i - \\alpha m_i$", "text": "text shift  $v_t - \\alpha m_t$"}
GEOMETRY_LABEL = {
    "cosine": "cosine (CLIP)",
    "euclidean": "$-\\|x-y\\|$ (EuCLIP)",
    "sq_euclidean": "$-\\|x-y\\|^2$ (EuCLIP, squared)",
}
ALPHA = r"shift $\alpha$ (Eq. 9)"


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
        ax.plot([m[0]], [m[1]], "o", color=color, ms=4.5, zorder=5)


def _vline0(ax):
    ax.axvline(0.0, color=style.REFERENCE, lw=0.8, ls=":")


def _subset_curves(ax, alphas, c, relative: bool = False) -> list[str]:
    """All / correct / misclassified on one panel (Fig. 6); returns the subsets without pairs at alpha = 0,
    which are said in the panel instead of drawn."""
    i0 = int(np.argmin(np.abs(alphas)))
    empty = []
    for sub, st in SUBSET_STYLE.items():
        y = np.asarray(c[f"loss_{sub}"], float)
        n = np.asarray(c["n_pairs" if sub == "all" else f"n_{sub}"])
        n0 = int(n[i0])
        if n0 == 0 or not np.isfinite(y).any() or (relative and not np.isfinite(y[i0])):
            empty.append(st["label"])
            continue
        if relative:
            y = y - y[i0]
        ax.plot(alphas, y, "-", color=st["color"], label=f"{st['short']} (n = {n0})")
        _mark_min(ax, alphas, y, st["color"])
    if empty:
        ax.text(
            0.03,
            0.04,
            "\n".join(f"{e}: no pairs" for e in empty),
            transform=ax.transAxes,
            ha="left",
            va="bottom",
            color="0.3",
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85),
        )
    _vline0(ax)
    ax.set_xlabel(ALPHA)
    return empty


def _accuracy(ax, alphas, c):
    ax.plot(alphas, c["accuracy_i2t"], "-", color="0.15", label="image→text")
    t2i = np.asarray(c["accuracy_t2i"], float)
    if np.isfinite(t2i).any():
        ax.plot(alphas, t2i, "--", color="0.55", label="text→image")
    _vline0(ax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(ALPHA)
    ax.set_ylabel("recall@1 in the batch")


def plot_loss_curves(alphas, curves: dict, shifts=("image", "text"), label: str = "", scale: float | None = None):
    """Fig. 6: the CLIP loss (Eq. 7) against alpha (Eq. 9) for all, correctly classified and misclassified
    pairs on one panel, the change of its alignment/uniformity terms (Eq. 8) and the retrieval accuracy; one
    row per shifted modality. ``curves[shift]`` as returned by :func:`clipgeom.loss.curves_from_terms`.
    A subset without pairs (every pair classified correctly, say) is named in the panel, not drawn."""
    alphas = np.asarray(alphas, float)
    shifts = [s for s in shifts if s in curves]
    nrow = max(len(shifts), 1)
    fig, axes = style.subplots(nrow, 3, height=2.25 * nrow + 0.45)
    for row, s in zip(axes, shifts, strict=False):
        c = curves[s]
        ax = row[0]
        _subset_curves(ax, alphas, c)
        ax.set_ylabel("loss (Eq. 7)")
        ax.set_title(SHIFT_LABEL[s])
        style.legend(ax, loc="best")
        ax = row[1]
        i0 = int(np.argmin(np.abs(alphas)))
        for q, ls, lab, col in (
            ("alignment_loss", "-", "$-$alignment $= -E[s_{jj}]$", "tab:purple"),
            ("uniformity", "--", "uniformity", "tab:olive"),
        ):
            y = np.asarray(c[f"{q}_all"], float)
            ax.plot(alphas, y - y[i0], ls, color=col, label=lab)
        _vline0(ax)
        ax.set_xlabel(ALPHA)
        ax.set_ylabel("change from $\\alpha = 0$")
        ax.set_title("Eq. 8 terms, all pairs")
        style.legend(ax, loc="best")
        ax = row[2]
        _accuracy(ax, alphas, c)
        ax.set_title("retrieval accuracy")
        style.legend(ax, loc="lower left")
    if not shifts:
        for ax in axes[0]:
            style.note(ax, "no shift computed")
    temp = f", logit scale {scale:g}" if scale is not None else ""
    style.suptitle(fig, f"CLIP loss under a mean shift (Fig. 6){temp}", label)
    return fig


def plot_geometry_curves(
    alphas, curves: dict, geometries, shifts=("image", "text"), label: str = "", scale: float | None = None
):
    """The alpha sweep under each geometry (EuCLIP's Euclidean logits beside cosine): one row per geometry,
    the loss change from alpha = 0 for all/correct/misclassified pairs per shift, and the retrieval accuracy.
    ``curves[(geometry, shift)]`` as returned by :func:`clipgeom.stages.loss.alpha_sweep`."""
    alphas = np.asarray(alphas, float)
    geometries = [g for g in geometries if any((g, s) in curves for s in shifts)]
    nrow = max(len(geometries), 1)
    fig, axes = style.subplots(nrow, len(shifts) + 1, height=1.95 * nrow + 0.55)
    for r, (row, g) in enumerate(zip(axes, geometries, strict=False)):
        for ax, s in zip(row, shifts, strict=False):
            c = curves.get((g, s))
            if c is None:
                style.note(ax, f"{s} shift not computed")
                continue
            _subset_curves(ax, alphas, c, relative=True)
            if r == 0:
                ax.set_title(SHIFT_LABEL[s])
        row[0].set_ylabel(f"{GEOMETRY_LABEL.get(g, g)}\nloss $-$ loss($\\alpha = 0$)")
        for ax in row[1 : len(shifts)]:
            ax.set_ylabel("loss $-$ loss($\\alpha = 0$)")
        ax = row[-1]
        for s, ls in zip(shifts, ("-", "--"), strict=False):
            c = curves.get((g, s))
            if c is not None:
                ax.plot(alphas, c["accuracy_i2t"], ls, color=style.MODALITY[s], label=f"{s} shift")
        _vline0(ax)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(ALPHA)
        ax.set_ylabel("image→text R@1")
        if r == 0:
            ax.set_title("retrieval accuracy")
            style.legend(ax, loc="best")
    if not geometries:
        for ax in axes[0]:
            style.note(ax, "no geometry configured")
    else:  # one legend for the subsets (the same in every panel)
        handles = [_proxy(st["color"], st["label"]) for st in SUBSET_STYLE.values()]
        axes[0, 0].legend(handles=handles, loc="best")
    temp = f", logit scale {scale:g}" if scale is not None else ""
    style.suptitle(fig, f"Loss change under a mean shift, by geometry{temp}", label)
    return fig


def _proxy(color, label):
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, label=label)


def plot_blur(settings: dict, bins: int = 50):
    """Fig. 7: histograms of cos(m, v) and cos(v_far, v), at the origin and off-centre.

    histtype="stepfilled": one polygon per series, the same pixels as edgeless bars, far cheaper
    to build and draw than one Rectangle per bin."""
    names = list(settings)
    fig, axes = style.subplots(1, len(names), height=2.7)
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
            color="tab:purple",
            label=f"cos(m, v): mean {s.cos_mean.mean():.3f}",
        )
        ax.hist(
            s.cos_far,
            bins=edges,
            histtype="stepfilled",
            alpha=0.6,
            color="0.45",
            label=f"cos(v_far, v): mean {s.cos_far.mean():.3f}",
        )
        nz = np.flatnonzero(s.centre)
        where = (
            "the origin"
            if nz.size == 0
            else "("
            + ", ".join(f"{s.centre[i]:g}" for i in range(nz.max() + 1))
            + (", 0, …)" if nz.max() + 1 < s.centre.size else ")")
        )
        ax.set_title(f"{name}: {len(s.vectors)} vectors in {s.vectors.shape[1]}-d\ncentred at {where}")
        ax.set_xlabel("cosine similarity")
        ax.set_ylabel("count")
        style.legend(ax, loc="best")
    style.suptitle(fig, "Similarity to the mean vs. to the least similar vector (Fig. 7)")
    return fig
