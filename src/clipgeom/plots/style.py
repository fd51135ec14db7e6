"""One look for every figure of the workflow.

- **Type**: 8–10 pt everywhere (ticks and legends 8, labels and panel titles 9, the figure's title 10), so a
  figure printed at its size reads like the paper's text around it.
- **Colours that mean the same thing in every figure**: image blue, text orange (:data:`MODALITY`); all pairs
  black, correctly classified green, misclassified red (:data:`SUBSET`).
- **Widths that fit a page**: :data:`PAGE_WIDTH` (7 in, the text width of an A4 or letter page with 2–2.5 cm
  margins, or both columns of a two-column paper) for figures with panels side by side, :data:`COLUMN_WIDTH`
  (3.4 in) for a single panel.
- **Empty is said, not drawn**: :func:`note` writes why a panel has nothing to show (no pairs, N ≤ d, ...) in
  the panel, without axes ticks that would suggest a scale.
- Every figure title ends in the dataset × model it shows (``label``, passed in by the stage script):
  :func:`suptitle`.

:func:`apply` sets the matplotlib defaults; every figure function of :mod:`clipgeom.plots` calls it (through
:func:`subplots`) before it builds its figure.
"""

from __future__ import annotations

#: the colour of each modality, in every figure
IMAGE = "#1f77b4"  # matplotlib's tab:blue
TEXT = "#ff7f0e"  # tab:orange
MODALITY = {"image": IMAGE, "text": TEXT}
#: the pair subsets of the alpha sweep (paper Fig. 6)
SUBSET = {"all": "#000000", "correct": "#2ca02c", "misclassified": "#d62728"}
#: reference lines (alpha = 0, thresholds, y = x, the chi density)
REFERENCE = "0.35"

PAGE_WIDTH = 7.0
COLUMN_WIDTH = 3.4
MIN_FONT, MAX_FONT = 8.0, 10.0

RC = {
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
    "figure.titlesize": 10,
    "figure.labelsize": 9,
    "axes.titlepad": 4.0,
    "axes.labelpad": 2.5,
    "legend.borderaxespad": 0.4,
    "legend.handlelength": 1.8,
    "legend.framealpha": 0.85,
    "lines.linewidth": 1.3,
    "lines.markersize": 4,
    "axes.linewidth": 0.7,
    "xtick.major.width": 0.7,
    "ytick.major.width": 0.7,
    "xtick.major.size": 3,
    "ytick.major.size": 3,
    "figure.constrained_layout.h_pad": 0.04,
    "figure.constrained_layout.w_pad": 0.04,
}


def apply() -> None:
    """Set the shared matplotlib defaults (:data:`RC`); cheap, called by every figure function."""
    import matplotlib as mpl

    mpl.rcParams.update(RC)


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = PAGE_WIDTH, height: float = 2.6, **kw):
    """``plt.subplots`` with the shared style, a page-fitting width (default :data:`PAGE_WIDTH`) and
    constrained layout (which keeps the figure title, panel titles, labels and legends clear of each other)."""
    import matplotlib.pyplot as plt

    apply()
    kw.setdefault("layout", "constrained")
    kw.setdefault("squeeze", False)
    return plt.subplots(nrows, ncols, figsize=(width, height), **kw)


def suptitle(fig, title: str, label: str = ""):
    """The figure's title, ending in the dataset × model it shows (``label``, e.g. ``"(coco × ViT-B-32)"``);
    the label goes on a line of its own when both would not fit the figure's width."""
    text = f"{title} {label}".strip()
    fits = fig.get_size_inches()[0] * 72 / (0.55 * RC["figure.titlesize"])  # characters on one line, about
    if label and len(text) > fits:
        text = f"{title}\n{label}"
    return fig.suptitle(text, fontsize=RC["figure.titlesize"])


def note(ax, text: str, *, wrap: int = 44) -> None:
    """Say in the panel why it has nothing to show, instead of drawing empty axes with made-up ticks."""
    import textwrap

    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_color("0.8")
    ax.text(
        0.5,
        0.5,
        "\n".join(textwrap.wrap(text, wrap)),
        ha="center",
        va="center",
        transform=ax.transAxes,
        fontsize=RC["axes.labelsize"],
        color="0.3",
    )


def log_ticks(ax, values, axis: str = "x") -> None:
    """Readable log-axis labels: plain numbers at 1, 2 and 5 per decade over a narrow range (matplotlib's
    own minor labels there run into each other), the decades alone over a wide one."""
    import numpy as np
    from matplotlib import ticker

    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return
    which = ax.xaxis if axis == "x" else ax.yaxis
    if np.log10(v.max() / v.min()) <= 2.5:
        which.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        which.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    which.set_minor_formatter(ticker.NullFormatter())


def legend(ax, *args, **kw):
    """A legend in the shared size, only when the panel has labelled artists."""
    handles, labels = ax.get_legend_handles_labels()
    if not handles and not args and "handles" not in kw:
        return None
    return ax.legend(*args, **kw)
