"""Writing a stage's outputs: metrics.json, a CSV of per-item values, figures as PNG + PDF.

Every stage writes through these helpers so that all metrics files look alike:
``{"stage": ..., "dataset": ..., "model": ..., "demo": bool, "summary": {...}, ...}``
where ``summary`` holds the headline numbers that ``summary.json`` gathers.
Every file is written atomically through :func:`clipgeom.atomic.atomic_path`.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from . import atomic

DEMO_NOTE = (
    "SYNTHETIC DATA: coloured shapes embedded by tiny CLIP-style models (trained here on a world with known concept "
    "frequencies, or with random weights); not CLIP: the numbers show the method and small trained models, not "
    "CLIP's geometry."
)


def to_jsonable(obj):
    """numpy scalars/arrays -> Python; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic.write_text(path, text)


def write_json(path: str | os.PathLike, data: Mapping) -> None:
    _atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, sort_keys=False) + "\n")


def write_metrics(
    path: str | os.PathLike,
    *,
    stage: str,
    summary: Mapping,
    details: Mapping | None = None,
    dataset: str | None = None,
    model: str | None = None,
    demo: bool = False,
    params: Mapping | None = None,
) -> dict:
    """Write a stage's metrics.json; ``summary`` is what summary.json will show under ``stage``."""
    data = {"stage": stage, "dataset": dataset, "model": model, "demo": bool(demo)}
    if demo:
        data["note"] = DEMO_NOTE
    if params is not None:
        data["params"] = dict(params)
    data["summary"] = dict(summary)
    if details:
        data.update(details)
    write_json(path, data)
    return data


def read_json(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        return json.load(fh)


def write_csv(path: str | os.PathLike, columns: Mapping[str, Sequence]) -> None:
    """Write equal-length columns as a CSV with a header row."""
    names = list(columns)
    lengths = {len(columns[n]) for n in names}
    if len(lengths) > 1:
        raise ValueError(f"{path}: CSV columns differ in length: { {n: len(columns[n]) for n in names} }")
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(names)
            for row in zip(*(columns[n] for n in names), strict=False):
                w.writerow([_csv_cell(v) for v in row])


def _csv_cell(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


PNG_DPI = 120
# zlib level of the PNGs: 1 writes the same pixels as the default (6) about 3x faster, files ~12%
# larger (the 1,340 x 2,620 px vSLERP thumbnail grid: 1.8 s -> 0.4 s of encoding).
PNG_COMPRESS_LEVEL = 1


def save_figure(fig, *paths: str | os.PathLike, demo: bool = False) -> None:
    """Save one matplotlib figure to every path given (e.g. the .png and the .pdf), then close it.

    Every file is cropped as ``savefig(bbox_inches="tight")`` crops it (the tight box of the
    figure, measured with the text metrics of that file's renderer, plus :rc:`savefig.pad_inches`),
    but each file is drawn once: ``bbox_inches="tight"``, and any layout engine left on the figure
    (``fig.tight_layout()`` leaves a placeholder one), make ``savefig`` lay the whole figure out in
    a dry-run draw before the real one.  Here the layout is frozen first and the tight box of a
    PNG or PDF is measured directly, without drawing.
    """
    import matplotlib as mpl

    if demo:  # 3 pt below the figure's lower edge, clear of its axis labels; the saved crop grows to hold it
        from matplotlib.transforms import ScaledTranslation

        fig.text(
            0.5,
            0.0,
            "SYNTHETIC: coloured shapes, tiny models trained here or random; not CLIP",
            ha="center",
            va="top",
            fontsize=8,
            color="firebrick",
            transform=fig.transFigure + ScaledTranslation(0, -3 / 72, fig.dpi_scale_trans),
        )
    try:
        _freeze_layout(fig)
        pad = mpl.rcParams["savefig.pad_inches"]
        for p in paths:
            p = Path(p)
            fmt = p.suffix.lstrip(".").lower() or None
            if fmt == "png":
                opts = {
                    "dpi": PNG_DPI,
                    "pil_kwargs": {"compress_level": PNG_COMPRESS_LEVEL},
                    "bbox_inches": _tight_bbox_agg(fig, PNG_DPI).padded(pad),
                }
            elif fmt == "pdf":  # images and rasterized artists at the figure's dpi, as before
                opts = {"bbox_inches": _tight_bbox_pdf(fig).padded(pad)}
            else:
                opts = {"bbox_inches": "tight"}
            with atomic.atomic_path(p) as tmp:
                fig.savefig(tmp, format=fmt, **opts)
    finally:
        _close(fig)


def _freeze_layout(fig) -> None:
    """Run the figure's layout engine, if any, once and remove it, keeping the axes where it put them.

    With an engine left on the figure (even the placeholder that ``fig.tight_layout()`` leaves),
    every ``savefig`` runs a dry-run draw first.
    """
    import matplotlib as mpl
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    engine = fig.get_layout_engine()
    if engine is None:
        return
    if not isinstance(engine, PlaceHolderLayoutEngine):
        fig.draw_without_rendering()  # an engine ("constrained", "tight") places the axes at draw time
    with mpl.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)  # None means "no engine" only while these two are off


def _tight_bbox_agg(fig, dpi: float):
    """The tight box (inches) of ``fig`` measured as Agg draws it at ``dpi`` (hinted text metrics)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):  # e.g. a bare Figure() or a vector canvas
        FigureCanvasAgg(fig)
    old = fig.dpi
    fig.dpi = dpi
    try:
        return fig.get_tightbbox(fig.canvas.get_renderer())
    finally:
        fig.dpi = old


def _tight_bbox_pdf(fig):
    """The tight box (inches) of ``fig`` measured as the PDF backend draws it (72 dpi, unhinted)."""
    import io

    from matplotlib.backends.backend_pdf import PdfFile, RendererPdf

    old = fig.dpi
    width, height = fig.get_size_inches()
    pdf = PdfFile(io.BytesIO())
    fig.dpi = 72  # as FigureCanvasPdf.print_pdf: one pdf point per pixel
    try:
        return fig.get_tightbbox(RendererPdf(pdf, old, height, width))
    finally:
        fig.dpi = old
        pdf.close()


def _close(fig) -> None:
    import sys

    plt = sys.modules.get("matplotlib.pyplot")  # a figure made without pyplot has nothing to close
    if plt is not None:
        plt.close(fig)
