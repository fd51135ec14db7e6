"""Figures of the conformity stages: Figs. 8–13 of the paper (conformity, KL matching, external sets, vSLERP)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

MOD_COLOR = {"image": "tab:blue", "text": "tab:orange"}
# Filled histograms: histtype="stepfilled" (one polygon per series, the same pixels as edgeless bars,
# far cheaper to build and draw than one Rectangle per bin); see plots.geometry.


# ---------------------------------------------------------------------------
# thumbnails
# ---------------------------------------------------------------------------
def load_thumbnails(
    images: str | None, file_names: Sequence[str], size: int = 128, log: logging.Logger | None = None
) -> list:
    """Thumbnails (PIL RGB, at most ``size`` px a side) for ``file_names``, None where unavailable.

    ``images`` is the dataset's image directory or .zip (None: no images).  Every
    missing or unreadable image is logged; the figures then show the file name.
    """
    log = log or logging.getLogger(__name__)
    out = [None] * len(file_names)
    if not images:
        log.info("no image source configured for this dataset: figures show file names instead of thumbnails")
        return out
    try:
        from clipgeom.imagesource import BadImageError, ImageSource
    except ImportError as e:  # pragma: no cover - the module ships with the package
        log.warning("clipgeom.imagesource unavailable (%s): figures show file names instead of thumbnails", e)
        return out
    src = ImageSource(images)
    if not src.exists():
        log.warning("image source %s does not exist: figures show file names instead of thumbnails", images)
        return out
    for i, name in enumerate(file_names):
        if not name:
            log.warning("image row has no file name: shown as a blank label")
            continue
        try:
            img = src.open(name)
        except (BadImageError, OSError, KeyError) as e:
            log.warning("thumbnail unavailable, showing the file name instead: %s", e)
            continue
        img.thumbnail((size, size))
        out[i] = img
    n_ok = sum(x is not None for x in out)
    log.info("loaded %d/%d thumbnails from %s", n_ok, len(out), images)
    return out


def _tile(ax, thumb, label: str, value_text: str) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if thumb is not None:
        ax.imshow(np.asarray(thumb))
    else:
        ax.text(
            0.5,
            0.5,
            "\n".join(textwrap.wrap(str(label) or "(no file)", 14)) + "\n(no image)",
            ha="center",
            va="center",
            fontsize=6,
            transform=ax.transAxes,
        )
        ax.set_facecolor("0.93")
    ax.set_title(value_text, fontsize=7)


# ---------------------------------------------------------------------------
# Fig. 8 / Fig. 9
# ---------------------------------------------------------------------------
def scatter_exact_vs_estimated(panels: Mapping[str, Mapping]) -> plt.Figure:
    """Fig. 9: exact conformity C against the estimate Ĉ = a·cos(m, v) + b, one panel per modality.

    ``panels[modality]`` = {"estimated": array, "exact": array, "a", "b", "pearson", "n"}.
    """
    mods = list(panels)
    fig, axes = plt.subplots(1, max(len(mods), 1), figsize=(4.2 * max(len(mods), 1), 4), squeeze=False)
    for ax, mod in zip(axes[0], mods, strict=False):
        p = panels[mod]
        est, exact = np.asarray(p["estimated"]), np.asarray(p["exact"])
        ax.scatter(est, exact, s=3, alpha=0.4, color=MOD_COLOR.get(mod, "k"), rasterized=True)
        lo = float(min(est.min(), exact.min()))
        hi = float(max(est.max(), exact.max()))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
        ax.set_xlabel(r"estimated conformity $\hat C = a\,\cos(m, v) + b$")
        ax.set_ylabel("exact conformity $C$ (Eq. 10)")
        ax.set_title(f"{mod} (N = {p['n']})\nr = {p['pearson']:.5f}, a = {p['a']:.3f}, b = {p['b']:+.4f}", fontsize=9)
        ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    return fig


def extremes_images(most: Sequence[Mapping], least: Sequence[Mapping]) -> plt.Figure:
    """Fig. 8 (images): most (top row) and least (bottom row) conforming images with their C.

    Each item: {"label": file name, "value": C, "thumb": PIL image or None}.
    """
    k = max(len(most), len(least), 1)
    fig, axes = plt.subplots(2, k, figsize=(1.7 * k, 4.0), squeeze=False)
    for r, (items, name) in enumerate(((most, "most conforming"), (least, "least conforming"))):
        for c in range(k):
            ax = axes[r, c]
            if c < len(items):
                it = items[c]
                _tile(ax, it.get("thumb"), it.get("label", ""), f"C = {it['value']:.4f}")
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.suptitle("Images: most (top) and least (bottom) conforming", fontsize=10)
    fig.tight_layout()
    return fig


def extremes_captions(most: Sequence[Mapping], least: Sequence[Mapping]) -> plt.Figure:
    """Fig. 8 (captions): the most and least conforming captions with their C."""
    lines = ["Most conforming captions (C, caption)"]
    lines += [f"  {it['value']:.4f}  {_short(it['label'])}" for it in most] or ["  (no captions)"]
    lines += ["", "Least conforming captions (C, caption)"]
    lines += [f"  {it['value']:.4f}  {_short(it['label'])}" for it in least] or ["  (no captions)"]
    fig = plt.figure(figsize=(8.5, 0.16 * len(lines) + 0.3))
    fig.text(0.01, 0.98, "\n".join(lines), va="top", ha="left", fontsize=8, family="monospace")
    return fig


def _short(text: str, n: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------
# Figs. 10-11
# ---------------------------------------------------------------------------
def distributions(
    image_conf: np.ndarray, text_conf: np.ndarray, edges: np.ndarray, kl: float | None = None, alpha: float = 0.0
) -> plt.Figure:
    """Fig. 10: image and text conformity histograms on shared bins."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for vals, mod in ((image_conf, "image"), (text_conf, "text")):
        ax.hist(
            vals,
            bins=edges,
            histtype="stepfilled",
            density=True,
            alpha=0.55,
            color=MOD_COLOR[mod],
            label=f"{mod} (N = {len(vals)}, mean {np.mean(vals):.3f})",
        )
    ax.set_xlabel("conformity C (Eq. 10)")
    ax.set_ylabel("density")
    title = f"Conformity distributions, image shift α = {alpha:g}"
    if kl is not None:
        title += f"\nKL(image ‖ text) = {kl:.3f}"
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def kl_curve(alphas: np.ndarray, kl: np.ndarray, argmin_alpha: float) -> plt.Figure:
    """Fig. 11: KL(image(α) ‖ text) against the image shift α (Eq. 9)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(alphas, kl, "o-", ms=3, color="tab:purple")
    ax.axvline(0.0, color="0.6", lw=0.8, ls=":", label="α = 0 (CLIP as trained)")
    ax.axvline(argmin_alpha, color="tab:red", lw=0.8, ls="--", label=f"argmin α = {argmin_alpha:g}")
    ax.set_xlabel(r"image shift $\alpha$ ($v_i' = v_i - \alpha\, m_i$)")
    ax.set_ylabel("KL(image ‖ text) [nats]")
    ax.set_yscale("log")
    ax.set_title("KL divergence of conformity distributions vs α", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# Fig. 13
# ---------------------------------------------------------------------------
def compare_distributions(
    reference_name: str,
    reference: Mapping[str, np.ndarray],
    sets: Mapping[str, Mapping[str, np.ndarray]],
    bins: int = 50,
) -> plt.Figure:
    """Fig. 13: conformity of external sets (w.r.t. the reference's modality set) beside the reference's own."""
    mods = [
        m for m in ("image", "text") if (m in reference and len(reference[m])) or any(m in s for s in sets.values())
    ]
    mods = mods or ["image"]
    fig, axes = plt.subplots(1, len(mods), figsize=(5.2 * len(mods), 3.8), squeeze=False)
    cmap = plt.get_cmap("tab10")
    for ax, mod in zip(axes[0], mods, strict=False):
        series = []
        if mod in reference and len(reference[mod]):
            series.append((f"{reference_name} (reference)", reference[mod], "k"))
        for i, (name, per_mod) in enumerate(sets.items()):
            if mod in per_mod and len(per_mod[mod]):
                series.append((name, per_mod[mod], cmap(i % 10)))
        if not series:
            ax.text(0.5, 0.5, f"no {mod} data", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        allv = np.concatenate([np.asarray(v) for _, v, _ in series])
        lo, hi = float(allv.min()), float(allv.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for label, vals, color in series:
            ax.hist(
                vals,
                bins=edges,
                density=True,
                histtype="step",
                lw=1.4,
                color=color,
                label=f"{label}: mean {np.mean(vals):.3f} (N = {len(vals)})",
            )
        ax.set_xlabel(f"conformity w.r.t. {reference_name} {mod} set")
        ax.set_ylabel("density")
        ax.set_title(mod, fontsize=9)
        ax.legend(fontsize=6)
    if not sets:
        fig.suptitle(f"No external sets reference {reference_name}: reference distributions only", fontsize=9)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------
# Fig. 12 (vSLERP, shown by nearest real images)
# ---------------------------------------------------------------------------
def vslerp_neighbours(rows: Sequence[Mapping], steps: int) -> plt.Figure:
    """One row per (pair, α): the nearest real image of every point along the vSLERP path.

    Each row: {"title": str, "tiles": [{"thumb", "label", "value_text"}] * steps}.
    """
    n = max(len(rows), 1)
    fig, axes = plt.subplots(n, steps, figsize=(1.25 * steps, 1.45 * n + 0.4), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(steps):
            ax = axes[r, c]
            if c < len(row["tiles"]):
                t = row["tiles"][c]
                _tile(ax, t.get("thumb"), t.get("label", ""), t.get("value_text", ""))
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(row["title"], fontsize=6, rotation=0, ha="right", va="center")
    fig.suptitle("vSLERP paths (Eq. 12), each point shown by its nearest real image (cosine)", fontsize=9)
    fig.tight_layout()
    return fig


def vslerp_stats(paths: Sequence[Mapping]) -> plt.Figure:
    """cos(m, p) and ‖p‖ along every path; ``paths``: {"pair", "alpha", "theta", "cos_to_mean", "norm"}."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    alphas = sorted({p["alpha"] for p in paths})
    cmap = plt.get_cmap("coolwarm")
    colors = {a: cmap(i / max(len(alphas) - 1, 1)) for i, a in enumerate(alphas)}
    styles = ["-", "--", ":", "-."]
    pairs = sorted({p["pair"] for p in paths})
    for p in paths:
        ls = styles[pairs.index(p["pair"]) % len(styles)]
        first = p["pair"] == pairs[0]
        axes[0].plot(
            p["theta"], p["cos_to_mean"], ls, color=colors[p["alpha"]], label=f"α = {p['alpha']:g}" if first else None
        )
        axes[1].plot(p["theta"], p["norm"], ls, color=colors[p["alpha"]])
    axes[0].set_ylabel("cos(m, vSLERP)")
    axes[1].set_ylabel("‖vSLERP‖")
    for ax in axes:
        ax.set_xlabel(r"interpolation fraction $\theta$")
    axes[0].legend(fontsize=7, title=f"line style: pair ({len(pairs)})", title_fontsize=7)
    fig.suptitle("Along the vSLERP paths (Eq. 12): cosine to the image mean and norm", fontsize=9)
    fig.tight_layout()
    return fig
