"""Figures of the conformity stages: Figs. 8–13 of the paper (conformity, KL matching, external sets, vSLERP)."""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from clipgeom.plots import style

MOD_COLOR = style.MODALITY
#: colours of external sets and other series that are not modalities (no blue, no orange)
SET_COLORS = ("tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:red", "tab:gray")
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


def _tile(ax, thumb, label: str, value_text: str, wrap: int | None = None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if wrap is None:  # characters of 8 pt text across the tile, about
        wrap = max(6, int(ax.get_position().width * ax.figure.get_figwidth() * 72 / (0.6 * 8)))
    if thumb is not None:
        ax.imshow(np.asarray(thumb))
    else:
        ax.text(
            0.5,
            0.5,
            "\n".join(textwrap.wrap(str(label) or "(no file)", wrap)[:3]) + "\n(no image)",
            ha="center",
            va="center",
            fontsize=8,
            transform=ax.transAxes,
            clip_on=True,
        )
        ax.set_facecolor("0.93")
    ax.set_title(value_text, fontsize=8, pad=2)


def _tile_grid(n_rows: int, n_cols: int, row_labels: Sequence[str], title_lines: int = 2, max_tile: float = 1.2):
    """A grid of image tiles that fits the page width, laid out by hand (no layout engine: a vSLERP grid
    has over a hundred panels): row labels on the left, ``title_lines`` lines of 8 pt text over each tile,
    room for a two-line figure title. Returns (fig, axes, top) with ``top`` the figure title's y."""
    style.apply()
    char_in = 0.6 * 8 / 72  # one character of 8 pt text, about
    longest = max([len(line) for lab in row_labels for line in str(lab).split("\n")] or [0])
    left = min(0.15 + longest * char_in, 2.2)
    gap = 0.06
    tile = min(max_tile, (style.PAGE_WIDTH - left - 0.05 - (n_cols - 1) * gap) / max(n_cols, 1))
    head = 0.55  # the figure title
    over = title_lines * 8 * 1.25 / 72 + 0.06  # each tile's own title
    width = left + n_cols * tile + (n_cols - 1) * gap + 0.05
    height = head + n_rows * (over + tile) + 0.05
    fig = plt.figure(figsize=(width, height))
    axes = np.empty((n_rows, n_cols), dtype=object)
    for r in range(n_rows):
        y = height - head - (r + 1) * (over + tile) + 0.0
        for c in range(n_cols):
            x = left + c * (tile + gap)
            axes[r, c] = fig.add_axes((x / width, y / height, tile / width, tile / height))
    return fig, axes, 1 - 0.08 / height


# ---------------------------------------------------------------------------
# Fig. 8 / Fig. 9
# ---------------------------------------------------------------------------
def scatter_exact_vs_estimated(panels: Mapping[str, Mapping], label: str = "") -> plt.Figure:
    """Fig. 9: exact conformity C against the estimate Ĉ = a·cos(m, v) + b, one panel per modality.

    ``panels[modality]`` = {"estimated": array, "exact": array, "a", "b", "pearson", "n"}.
    """
    mods = list(panels)
    fig, axes = style.subplots(1, max(len(mods), 1), width=3.5 * max(len(mods), 1), height=3.3)
    for ax, mod in zip(axes[0], mods, strict=False):
        p = panels[mod]
        est, exact = np.asarray(p["estimated"]), np.asarray(p["exact"])
        ax.scatter(est, exact, s=3, alpha=0.4, color=MOD_COLOR.get(mod, "k"), rasterized=True, label=mod)
        lo = float(min(est.min(), exact.min()))
        hi = float(max(est.max(), exact.max()))
        ax.plot([lo, hi], [lo, hi], "--", color=style.REFERENCE, lw=0.8, label="y = x")
        ax.set_xlabel(r"estimate $\hat C = a\,\cos(m, v) + b$ (Eq. 11)")
        ax.set_ylabel("exact conformity $C$ (Eq. 10)")
        ax.set_title(f"{mod} (N = {p['n']})\nr = {p['pearson']:.5f}, a = {p['a']:.3f}, b = {p['b']:+.4f}")
        style.legend(ax, loc="upper left", markerscale=3)
    if not mods:
        style.note(axes[0, 0], "no modality with at least 2 rows")
    style.suptitle(fig, "Exact vs estimated conformity (Fig. 9)", label)
    return fig


def extremes_images(most: Sequence[Mapping], least: Sequence[Mapping], label: str = "") -> plt.Figure:
    """Fig. 8 (images): most (top row) and least (bottom row) conforming images with their C.

    Each item: {"label": file name, "value": C, "thumb": PIL image or None}.
    """
    k = max(len(most), len(least), 1)
    names = ("most\nconforming", "least\nconforming")
    fig, axes, top = _tile_grid(2, k, names, title_lines=1, max_tile=1.1)
    for r, (items, name) in enumerate(zip((most, least), names, strict=True)):
        for c in range(k):
            ax = axes[r, c]
            if c < len(items):
                it = items[c]
                _tile(ax, it.get("thumb"), it.get("label", ""), f"C = {it['value']:.4f}")
            else:
                ax.axis("off")
        if not items:
            axes[r, 0].axis("on")
            style.note(axes[r, 0], "no images")
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center")
    fig.suptitle(
        f"Most (top) and least (bottom) conforming images (Fig. 8) {label}".strip(),
        y=top,
        va="top",
        fontsize=style.RC["figure.titlesize"],
    )
    return fig


def _caption_rows(items: Sequence[Mapping]) -> list[str]:
    """One row per distinct caption text: its C (the range when the same text occurs several times) and the count."""
    groups: dict[str, list[float]] = {}
    for it in items:
        groups.setdefault(" ".join(str(it["label"]).split()), []).append(float(it["value"]))
    rows = []
    for text, vals in groups.items():
        c = f"{vals[0]:.4f}" if len(vals) == 1 else f"{max(vals):.4f}–{min(vals):.4f}"
        rows.append([c, f"×{len(vals)}" if len(vals) > 1 else "", _short(text, 70)])
    return rows


def extremes_captions(most: Sequence[Mapping], least: Sequence[Mapping], label: str = "") -> plt.Figure:
    """Fig. 8 (captions): the most and least conforming captions with their C, as two tables; a caption text
    that occurs several times (paraphrase templates repeat) is one row with its count and range of C."""
    blocks = [("Most conforming", _caption_rows(most)), ("Least conforming", _caption_rows(least))]
    n = sum(max(len(r), 1) + 2 for _, r in blocks)
    height = 0.19 * n + 0.5
    style.apply()
    fig, axes = plt.subplots(
        2,
        1,
        figsize=(style.PAGE_WIDTH, height),
        gridspec_kw={"height_ratios": [max(len(r), 1) + 1 for _, r in blocks]},
    )
    for ax, (title, rows) in zip(axes, blocks, strict=True):
        ax.axis("off")
        ax.set_title(title, loc="left", fontsize=9)
        if not rows:
            ax.text(0.0, 0.5, "(no captions)", fontsize=8, va="center")
            continue
        table = ax.table(
            cellText=rows,
            colLabels=["C (Eq. 10)", "n", "caption"],
            colWidths=[0.17, 0.06, 0.77],
            cellLoc="left",
            colLoc="left",
            loc="upper left",
            edges="horizontal",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.1)
    style.suptitle(fig, "Most and least conforming captions (Fig. 8)", label)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / height), h_pad=0.2)
    return fig


def _short(text: str, n: int = 84) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ---------------------------------------------------------------------------
# Figs. 10-11
# ---------------------------------------------------------------------------
def distributions(
    image_conf: np.ndarray,
    text_conf: np.ndarray,
    edges: np.ndarray,
    kl: float | None = None,
    alpha: float = 0.0,
    label: str = "",
) -> plt.Figure:
    """Fig. 10: image and text conformity histograms on shared bins."""
    fig, axes = style.subplots(width=4.8, height=3.1)
    ax = axes[0, 0]
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
    title = f"image shift α = {alpha:g}"
    if kl is not None:
        title += f": KL(image ‖ text) = {kl:.3f}"
    ax.set_title(title)
    style.legend(ax, loc="upper left")
    style.suptitle(fig, "Conformity distributions (Fig. 10)", label)
    return fig


def kl_curve(alphas: np.ndarray, kl: np.ndarray, argmin_alpha: float, label: str = "") -> plt.Figure:
    """Fig. 11: KL(image(α) ‖ text) against the image shift α (Eq. 9)."""
    fig, axes = style.subplots(width=4.8, height=3.1)
    ax = axes[0, 0]
    ax.plot(alphas, kl, "o-", ms=3, color="tab:purple", label="KL(image(α) ‖ text)")
    ax.axvline(0.0, color=style.REFERENCE, lw=0.8, ls=":", label="α = 0 (CLIP as trained)")
    ax.axvline(argmin_alpha, color="tab:red", lw=0.8, ls="--", label=f"lowest at α = {argmin_alpha:g}")
    ax.set_xlabel(r"image shift $\alpha$ ($v_i' = v_i - \alpha\, m_i$, Eq. 9)")
    ax.set_ylabel("KL(image ‖ text) [nats]")
    ax.set_yscale("log")
    style.legend(ax, loc="best")
    style.suptitle(fig, "KL of the conformity distributions vs α (Fig. 11)", label)
    return fig


# ---------------------------------------------------------------------------
# Fig. 13
# ---------------------------------------------------------------------------
def compare_distributions(
    reference_name: str,
    reference: Mapping[str, np.ndarray],
    sets: Mapping[str, Mapping[str, np.ndarray]],
    bins: int = 50,
    label: str = "",
) -> plt.Figure:
    """Fig. 13: conformity of external sets (w.r.t. the reference's modality set) beside the reference's own."""
    mods = [
        m for m in ("image", "text") if (m in reference and len(reference[m])) or any(m in s for s in sets.values())
    ]
    mods = mods or ["image"]
    fig, axes = style.subplots(1, len(mods), width=3.5 * len(mods), height=3.2)
    for ax, mod in zip(axes[0], mods, strict=False):
        series = []
        if mod in reference and len(reference[mod]):
            series.append((f"{reference_name} (reference)", reference[mod], MOD_COLOR[mod]))
        for i, (name, per_mod) in enumerate(sets.items()):
            if mod in per_mod and len(per_mod[mod]):
                series.append((name, per_mod[mod], SET_COLORS[i % len(SET_COLORS)]))
        ax.set_title(f"{mod} sets", color=MOD_COLOR[mod])
        if not series:
            style.note(ax, f"no {mod} data")
            continue
        allv = np.concatenate([np.asarray(v) for _, v, _ in series])
        lo, hi = float(allv.min()), float(allv.max())
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        for name, vals, color in series:
            ax.hist(
                vals,
                bins=edges,
                density=True,
                histtype="step",
                lw=1.4,
                color=color,
                label=f"{name}: mean {np.mean(vals):.3f} (N = {len(vals)})",
            )
        ax.set_xlabel(f"conformity w.r.t. {reference_name}'s {mod} set")
        ax.set_ylabel("density")
        style.legend(ax, loc="upper left")
    head = f"Conformity of external sets against {reference_name} (Fig. 13)"
    if not sets:
        head = f"No external set references {reference_name}: its own distributions only"
    style.suptitle(fig, head, label)
    return fig


# ---------------------------------------------------------------------------
# Fig. 12 (vSLERP, shown by nearest real images)
# ---------------------------------------------------------------------------
def vslerp_neighbours(rows: Sequence[Mapping], steps: int, label: str = "") -> plt.Figure:
    """One row per (pair, α): the nearest real image of every point along the vSLERP path.

    Each row: {"title": str, "tiles": [{"thumb", "label", "value_text"}] * steps}.
    """
    n = max(len(rows), 1)
    fig, axes, top = _tile_grid(n, max(steps, 1), [r["title"] for r in rows], title_lines=2)
    for r, row in enumerate(rows):
        for c in range(steps):
            ax = axes[r, c]
            if c < len(row["tiles"]):
                t = row["tiles"][c]
                _tile(ax, t.get("thumb"), t.get("label", ""), t.get("value_text", ""))
            else:
                ax.axis("off")
        axes[r, 0].set_ylabel(row["title"], rotation=0, ha="right", va="center")
    if not rows:
        style.note(axes[0, 0], "no pairs")
    fig.suptitle(
        f"vSLERP paths (Eq. 12), each point shown by its nearest real image (cosine) {label}".strip(),
        y=top,
        va="top",
        fontsize=style.RC["figure.titlesize"],
        wrap=True,
    )
    return fig


def vslerp_stats(paths: Sequence[Mapping], label: str = "") -> plt.Figure:
    """cos(m, p) and ‖p‖ along every path; ``paths``: {"pair", "alpha", "theta", "cos_to_mean", "norm"}.

    Colour: α (α = 0, the plain SLERP, in black); line style: the pair; a legend for each."""
    from matplotlib.lines import Line2D

    fig, axes = style.subplots(1, 2, width=style.PAGE_WIDTH, height=3.0)
    ax0, ax1 = axes[0]
    alphas = sorted({p["alpha"] for p in paths})
    others = [a for a in alphas if a != 0]
    cmap = plt.get_cmap("plasma")
    colors = {a: cmap(0.8 * i / max(len(others) - 1, 1)) for i, a in enumerate(others)}
    colors[0.0] = "k"
    styles = ["-", "--", ":", "-."]
    pairs = sorted({p["pair"] for p in paths})
    for p in paths:
        ls = styles[pairs.index(p["pair"]) % len(styles)]
        lw = 1.7 if p["alpha"] == 0 else 1.2
        ax0.plot(p["theta"], p["cos_to_mean"], ls, color=colors[p["alpha"]], lw=lw)
        ax1.plot(p["theta"], p["norm"], ls, color=colors[p["alpha"]], lw=lw)
    ax0.set_ylabel("cos(m, vSLERP point)")
    ax1.set_ylabel("‖vSLERP point‖")
    for ax in (ax0, ax1):
        ax.set_xlabel(r"interpolation fraction $\theta$")
    if paths:
        ax0.legend(
            handles=[Line2D([], [], color=colors[a], lw=1.7 if a == 0 else 1.2, label=f"α = {a:g}") for a in alphas],
            title="colour: α",
            loc="best",
        )
        ax1.legend(
            handles=[
                Line2D([], [], color="0.3", ls=styles[i % len(styles)], label=f"pair {q}") for i, q in enumerate(pairs)
            ],
            title="line style: pair",
            loc="best",
        )
    else:
        style.note(ax0, "no paths")
        style.note(ax1, "no paths")
    style.suptitle(fig, "Along the vSLERP paths (Eq. 12): cosine to the image mean and norm", label)
    return fig
