"""Figures of the cross-model comparison (:mod:`clipgeom.compare`).

``headline_grid``: one panel per main headline number, models along x, one marker series per dataset,
the paper's value (COCO × ViT-B/32) dashed where it reports one. ``all_numbers``: every numeric
headline key (rows) × every dataset × model (columns), each row coloured from its own minimum to
its maximum and annotated with the value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from ..compare import is_number
from . import style

MARKERS = "os^Dv<>pPX*h"


def _plt():
    import matplotlib.pyplot as plt

    style.apply()
    return plt


def _fmt(v) -> str:
    if not is_number(v):
        return "–"
    if isinstance(v, int) or float(v).is_integer() and abs(v) < 1e6:
        return str(int(v))
    a = abs(v)
    if a != 0 and (a < 1e-3 or a >= 1e4):
        return f"{v:.2e}"
    return f"{v:.3g}"


def _order(values: Sequence[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def _honest_ylim(ax, values, min_rel_span: float = 0.2) -> None:
    """y limits that show the data's range without magnifying a rounding difference: the span is at least
    ``min_rel_span`` of the largest magnitude (all values equal: a band around them), padded by a fifth; the
    limits also keep what is already drawn (a reference line)."""
    if not values:
        return
    lo0, hi0 = ax.get_ylim()
    lo, hi = min(values), max(values)
    scale = max(abs(lo), abs(hi), 1e-12)
    span = max(hi - lo, min_rel_span * scale)
    mid = (lo + hi) / 2
    lo, hi = mid - 0.6 * span, mid + 0.6 * span
    drawn = [ln.get_ydata()[0] for ln in ax.get_lines() if len(set(np.atleast_1d(ln.get_ydata()))) == 1]
    lo, hi = min([lo, *drawn]), max([hi, *drawn])
    ax.set_ylim(lo, hi)


def headline_grid(
    rows: Sequence[Mapping],
    keys: Sequence[str],
    paper: Mapping | None = None,
    ncols: int = 4,
    title: str = "Headline numbers across models and datasets",
):
    """A grid of small panels, one per key: value per model (x), one series per dataset."""
    plt = _plt()
    paper = paper or {}
    models = _order([str(r["model"]) for r in rows])
    datasets = _order([str(r["dataset"]) for r in rows])
    if not keys:
        fig, axes = style.subplots(width=5.0, height=1.4)
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no numeric headline key found in any summary.json", ha="center", va="center")
        return fig
    # panels that fit the page: as many columns of at least 2.2 in as the page holds (at most ``ncols``)
    width = max(2.2, 0.35 * len(models) + 1.1)
    ncols = max(1, min(ncols, len(keys), int(style.PAGE_WIDTH // width)))
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = style.subplots(nrows, ncols, height=2.1 * nrows + 0.7)
    from matplotlib.colors import to_hex

    modality = {to_hex(c) for c in style.MODALITY.values()}  # datasets are not modalities: neither colour
    colors = [c for c in plt.rcParams["axes.prop_cycle"].by_key()["color"] if to_hex(c) not in modality]
    x = np.arange(len(models))
    for i, key in enumerate(keys):
        ax = axes[i // ncols][i % ncols]
        for j, ds in enumerate(datasets):
            xs, ys = [], []
            for r in rows:
                if str(r["dataset"]) == ds and is_number(r.get(key)):
                    xs.append(models.index(str(r["model"])))
                    ys.append(float(r[key]))
            if not xs:
                continue
            off = (j - (len(datasets) - 1) / 2) * 0.22 if len(datasets) > 1 else 0.0
            ax.plot(
                np.asarray(xs) + off,
                ys,
                MARKERS[j % len(MARKERS)],
                color=colors[j % len(colors)],
                label=ds,
                markersize=5,
                linestyle="none",
            )
            for xv, yv in zip(xs, ys, strict=False):
                ax.annotate(
                    _fmt(yv),
                    (xv + off, yv),
                    textcoords="offset points",
                    fontsize=8,
                    xytext=(5, 3) if j % 2 == 0 else (5, -9),
                )
        pv = paper.get(key)
        # the paper's number only beside a run of the paper's setup (COCO val2017 x ViT-B/32/openai)
        if is_number(pv) and any(r.get("paper_setup") is True for r in rows):
            ax.axhline(float(pv), color="0.3", linestyle="--", linewidth=0.9, label="paper (COCO, ViT-B/32)")
        _honest_ylim(ax, [float(r[key]) for r in rows if is_number(r.get(key))])
        head, _, leaf = key.rpartition(".")
        ax.set_title(head or key, fontsize=8)
        ax.set_ylabel(leaf if head else "value", fontsize=8)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.grid(axis="y", alpha=0.3)
    for k in range(len(keys), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:  # in the first unused panel, else in the last panel
        spare = [axes[k // ncols][k % ncols] for k in range(len(keys), nrows * ncols)]
        where = spare[0] if spare else axes.flat[len(keys) - 1]
        where.legend([handles[lab] for lab in labels], labels, loc="center" if spare else "best", title="dataset")
    style.suptitle(fig, title)
    return fig


def all_numbers(
    rows: Sequence[Mapping],
    keys: Sequence[str],
    title: str = "Every numeric headline key: relative difference from the row's median",
    clip: float = 0.5,
):
    """Heatmap: keys (rows) × dataset × model (columns), values written in, coloured by the relative difference
    from the row's median, (v − median) / |median|, on a diverging scale clipped at ±``clip`` (white: as the
    median). So 81° against 83° stays near white, 120 against 360 is dark: the colour shows how far apart the
    numbers are, not only their order (a per-row min–max colour makes any two unequal numbers look opposite).

    Up to 6 dataset × model columns fit the page width; more make the figure wider than a page (the values
    stay legible)."""
    plt = _plt()
    labels = [f"{r['dataset']} × {r['model']}" for r in rows]
    if not keys or not rows:
        fig, axes = style.subplots(width=5.0, height=1.4)
        axes[0, 0].axis("off")
        axes[0, 0].text(0.5, 0.5, "no numeric headline key found in any summary.json", ha="center", va="center")
        return fig
    vals = np.array([[float(r[k]) if is_number(r.get(k)) else np.nan for r in rows] for k in keys])
    scaled = np.full_like(vals, np.nan)
    for i, row in enumerate(vals):
        ok = np.isfinite(row)
        if not ok.any():
            continue
        med = float(np.median(row[ok]))
        denom = max(abs(med), float(np.max(np.abs(row[ok]))) * 1e-3, 1e-12)
        scaled[i, ok] = np.clip((row[ok] - med) / denom, -clip, clip)
    h = 0.2 * len(keys) + 1.6
    # the key names take about 2.6 in at 8 pt; the columns share what is left of the page (0.62 in at least)
    w = min(style.PAGE_WIDTH, 2.9 + 0.85 * len(rows)) if len(rows) <= 6 else 2.9 + 0.62 * len(rows)
    fig, axes = style.subplots(width=w, height=h)
    ax = axes[0, 0]
    cmap = plt.get_cmap("PuOr").with_extremes(bad="0.9")  # diverging, not the modality colours
    im = ax.imshow(
        np.ma.masked_invalid(scaled), aspect="auto", cmap=cmap, vmin=-clip, vmax=clip, interpolation="nearest"
    )
    for i in range(len(keys)):
        for j in range(len(rows)):
            v = vals[i, j]
            s = scaled[i, j]
            ax.text(
                j,
                i,
                _fmt(v) if np.isfinite(v) else "–",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if np.isfinite(s) and abs(s) > 0.6 * clip else "black",
            )
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels(keys)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([lab.replace(" × ", " ×\n") for lab in labels], rotation=0)
    ax.xaxis.tick_top()
    cb = fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    cb.set_label("(value − row median) / |median|, clipped")
    style.suptitle(fig, title)
    return fig
