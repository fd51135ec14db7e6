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
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from . import atomic

DEMO_NOTE = (
    "DEMO RUN: synthetic shapes embedded by a tiny randomly initialised CLIP; "
    "these numbers say nothing about CLIP."
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
        raise ValueError(f"{path}: CSV columns differ in length: "
                         f"{ {n: len(columns[n]) for n in names} }")
    with atomic.atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(names)
            for row in zip(*(columns[n] for n in names)):
                w.writerow([_csv_cell(v) for v in row])


def _csv_cell(v):
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, np.generic):
        return v.item()
    return v


def save_figure(fig, *paths: str | os.PathLike, demo: bool = False) -> None:
    """Save one matplotlib figure to every path given (e.g. the .png and the .pdf), then close it.

    Every file is cropped to the same tight box (``bbox_inches="tight"``, 0.1 in padding), computed
    once here: ``savefig(bbox_inches="tight")`` would lay the whole figure out again for every file
    (a dry-run draw, then the tight box, then the real draw), roughly doubling the cost of each save.
    """
    import matplotlib as mpl

    if demo:
        fig.text(0.5, 0.005, "DEMO: tiny random model, numbers say nothing about CLIP",
                 ha="center", va="bottom", fontsize=7, color="firebrick")
    try:
        bbox = _tight_bbox_inches(fig, mpl.rcParams["savefig.pad_inches"])
        for p in paths:
            p = Path(p)
            with atomic.atomic_path(p) as tmp:
                fig.savefig(tmp, format=p.suffix.lstrip(".").lower() or None,
                            dpi=120 if p.suffix == ".png" else None, bbox_inches=bbox)
    finally:
        _close(fig)


def _tight_bbox_inches(fig, pad: float):
    """The figure's tight bounding box (inches) with ``pad`` inches around it, laid out once.

    Leaves the figure without a layout engine: ``fig.tight_layout()`` leaves a placeholder engine
    behind, and any engine makes every ``savefig`` lay the figure out again in a dry-run draw.  A
    real engine (``layout="constrained"`` / ``"tight"``) is run once here, and its result kept.
    """
    import matplotlib as mpl
    from matplotlib.layout_engine import PlaceHolderLayoutEngine

    engine = fig.get_layout_engine()
    if engine is not None:
        if not isinstance(engine, PlaceHolderLayoutEngine):
            fig.draw_without_rendering()  # the engine places the axes at draw time
        with mpl.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
            fig.set_layout_engine(None)
    if not hasattr(fig.canvas, "get_renderer"):  # a bare Figure(): lay out with an Agg renderer
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
    return fig.get_tightbbox(fig.canvas.get_renderer()).padded(pad)


def _close(fig) -> None:
    import sys

    plt = sys.modules.get("matplotlib.pyplot")  # a figure made without pyplot has nothing to close
    if plt is not None:
        plt.close(fig)
