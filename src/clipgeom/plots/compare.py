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

MARKERS = "os^Dv<>pPX*h"


def _plt():
    import matplotlib.pyplot as plt

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
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no numeric headline key found in any summary.json", ha="center", va="center")
        return fig
    ncols = max(1, min(ncols, len(keys)))
    nrows = math.ceil(len(keys) / ncols)
    width = max(3.2, 0.55 * len(models) + 1.6)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 2.9 * nrows + 0.6), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
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
                markersize=6,
                linestyle="none",
            )
            for xv, yv in zip(xs, ys, strict=False):
                ax.annotate(
                    _fmt(yv),
                    (xv + off, yv),
                    textcoords="offset points",
                    fontsize=6.5,
                    xytext=(5, 4) if j % 2 == 0 else (5, -10),
                )
        pv = paper.get(key)
        if is_number(pv):
            ax.axhline(float(pv), color="0.3", linestyle="--", linewidth=0.9, label="paper (COCO, ViT-B/32)")
        ax.set_title(key, fontsize=8.5)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=30, ha="right", fontsize=7.5)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.tick_params(axis="y", labelsize=7.5)
        ax.margins(y=0.18)
        ax.grid(axis="y", alpha=0.3)
    for k in range(len(keys), nrows * ncols):
        axes[k // ncols][k % ncols].axis("off")
    handles, labels = {}, []
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=False):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
    if handles:
        fig.legend(
            [handles[lab] for lab in labels],
            labels,
            loc="upper right",
            fontsize=8,
            frameon=False,
            ncol=min(len(labels), 4),
        )
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    fig.tight_layout(rect=(0, 0.02, 1, 0.95))
    return fig


def all_numbers(
    rows: Sequence[Mapping],
    keys: Sequence[str],
    title: str = "Every numeric headline key (each row scaled to its own min–max)",
):
    """Heatmap: keys (rows) × dataset × model (columns), per-row min–max colour, values written in."""
    plt = _plt()
    labels = [f"{r['dataset']} × {r['model']}" for r in rows]
    if not keys or not rows:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, "no numeric headline key found in any summary.json", ha="center", va="center")
        return fig
    vals = np.array([[float(r[k]) if is_number(r.get(k)) else np.nan for r in rows] for k in keys])
    scaled = np.full_like(vals, np.nan)
    for i, row in enumerate(vals):
        ok = np.isfinite(row)
        if not ok.any():
            continue
        lo, hi = row[ok].min(), row[ok].max()
        scaled[i, ok] = 0.5 if hi == lo else (row[ok] - lo) / (hi - lo)
    h = 0.24 * len(keys) + 1.6
    w = max(6.0, 1.25 * len(rows) + 4.2)
    fig, ax = plt.subplots(figsize=(w, h))
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.9")
    ax.imshow(np.ma.masked_invalid(scaled), aspect="auto", cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
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
                fontsize=6.5,
                color="white" if np.isfinite(s) and s < 0.55 else "black",
            )
    ax.set_yticks(range(len(keys)))
    ax.set_yticklabels(keys, fontsize=7)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=7.5)
    ax.xaxis.tick_top()
    ax.set_title(title, fontsize=10, pad=38 if len(rows) > 1 else 20)
    fig.tight_layout()
    return fig
