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
    """Save one matplotlib figure to every path given (e.g. the .png and the .pdf), then close it."""
    import matplotlib.pyplot as plt

    if demo:
        fig.text(0.5, 0.005, "DEMO: tiny random model, numbers say nothing about CLIP",
                 ha="center", va="bottom", fontsize=7, color="firebrick")
    try:
        for p in paths:
            p = Path(p)
            with atomic.atomic_path(p) as tmp:
                fig.savefig(tmp, format=p.suffix.lstrip(".").lower() or None,
                            dpi=120 if p.suffix == ".png" else None, bbox_inches="tight")
    finally:
        plt.close(fig)
