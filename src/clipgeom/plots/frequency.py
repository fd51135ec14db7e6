"""The figure of the concept_frequency stage (paper §6, Prediction 1): conformity against frequency.

One panel per modality. With training frequencies: one dot per concept, its mean conformity (Eq. 10) against
log10 of its training frequency, error bars the within-concept standard deviation. With the word-frequency
proxy: every row (a seeded subsample beyond ``max_points``) and the means of equal-count bins of the proxy
with their standard deviations. The computation is :mod:`clipgeom.stages.frequency`'s.
"""

from __future__ import annotations

import textwrap

import numpy as np

from clipgeom.plots import style

COLORS = style.MODALITY


def _fmt(x, spec=".3f") -> str:
    return "n/a" if x is None else format(x, spec)


def _title(mod: str, r: dict) -> str:
    lo, hi = r.get("ci") or (None, None)
    line = f"{mod}: ρ(freq, C) = {_fmt(r.get('rho'))} [{_fmt(lo)}, {_fmt(hi)}]\np_perm = {_fmt(r.get('p'), '.3g')}"
    if r.get("training"):
        clo, chi = r.get("concept_ci") or (None, None)
        line += (
            f"\nconcept level ({r.get('n_concepts')} concepts): ρ = {_fmt(r.get('concept_rho'))} "
            f"[{_fmt(clo)}, {_fmt(chi)}]"
        )
    return line


def _training_panel(ax, mod: str, r: dict) -> None:
    f = np.asarray(r["frequency"], dtype=np.float64)
    pos = f > 0
    x = np.full(f.shape, np.nan)
    x[pos] = np.log10(f[pos])
    if (~pos).any():  # frequency 0: drawn one decade left of the rarest concept, hollow
        left = (np.nanmin(x) if pos.any() else 0.0) - 1.0
        x[~pos] = left
    ax.errorbar(
        x[pos], r["mean"][pos], yerr=r["spread"][pos], fmt="o", ms=5, color=COLORS[mod], ecolor="0.6", capsize=2
    )
    if (~pos).any():
        ax.errorbar(
            x[~pos], r["mean"][~pos], yerr=r["spread"][~pos], fmt="o", mfc="none", color=COLORS[mod], ecolor="0.6"
        )
        ax.annotate(
            "frequency 0", (x[~pos][0], r["mean"][~pos][0]), fontsize=8, xytext=(3, 3), textcoords="offset points"
        )
    ax.set_xlabel("log10 training frequency of the concept")
    ax.set_ylabel("concept mean C (Eq. 10)\n± std within concept")


def _proxy_panel(ax, mod: str, r: dict, bins: int, max_points: int, seed: int) -> None:
    x = np.asarray(r["log_frequency"], dtype=np.float64)
    y = np.asarray(r["conformity"], dtype=np.float64)
    draw = np.arange(x.size)
    if x.size > max_points:
        draw = np.sort(np.random.default_rng(seed).choice(x.size, max_points, replace=False))
    ax.scatter(x[draw], y[draw], s=4, alpha=0.3, color=COLORS[mod], lw=0, label="rows")
    k = max(1, min(bins, x.size // 5))
    edges = np.unique(np.quantile(x, np.linspace(0, 1, k + 1)))
    if edges.size >= 2:
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, edges.size - 2)
        cx = [x[which == b].mean() for b in range(edges.size - 1) if (which == b).any()]
        my = [y[which == b].mean() for b in range(edges.size - 1) if (which == b).any()]
        sy = [y[which == b].std() for b in range(edges.size - 1) if (which == b).any()]
        ax.errorbar(cx, my, yerr=sy, fmt="s-", color="k", ms=4, capsize=2, lw=1, label="bin mean ± std")
    ax.legend(loc="lower right")
    ax.set_xlabel("proxy: mean ln word frequency\nof the caption(s) in the corpus")
    ax.set_ylabel("conformity C (Eq. 10)")


def plot_concept_frequency(
    panels: dict, source: str, label: str = "", bins: int = 10, max_points: int = 20000, seed: int = 0
):
    """Conformity against frequency, one panel per modality (``panels[mod]`` from the stage's ``plot``)."""
    mods = [m for m in ("image", "text") if m in panels]
    fig, axes = style.subplots(1, len(mods), width=3.5 * len(mods), height=3.6)
    for ax, mod in zip(axes[0], mods, strict=True):
        r = panels[mod]
        if "reason" in r:
            ax.axis("off")
            ax.text(0.5, 0.5, "\n".join(textwrap.wrap(f"{mod}: {r['reason']}", 40)), ha="center", va="center")
            continue
        if r["training"]:
            _training_panel(ax, mod, r)
        else:
            _proxy_panel(ax, mod, r, bins, max_points, seed)
        ax.set_title(_title(mod, r), fontsize=8)
        ax.grid(alpha=0.3)
    proxy = source.startswith("proxy")
    head = (
        "Prediction 1 (PROXY): conformity vs word frequency"
        if proxy
        else "Prediction 1: conformity vs concept frequency"
    )
    fig.suptitle(f"{head} {label}\n" + "\n".join(textwrap.wrap(f"frequency source: {source}", 90)), fontsize=10)
    return fig
