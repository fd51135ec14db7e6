"""Experiment arms: the models of one arm (``models.<name>.arm``, e.g. ``cos/zipf``) are one treatment trained
with different seeds; their headline numbers are pooled into a mean and a 95% Student-t interval over seeds.

Each arm is read in the geometry it was trained with: the α-sweep numbers of a model trained with Euclidean
logits come from ``alpha_sweep.euclidean.*`` (its own logits and scale), those of a cosine model from the
cosine sweep. Numbers (:data:`ARM_METRICS`): in-batch image→text accuracy at α = 0, the modality gap (linear
SVM on all features and on the two most separating ones, and the angle between the modality means), thin
shell, offset from the origin (‖m‖/‖σ‖), where the loss is lowest in α and the trends of the correct and
misclassified pairs' loss on [0, 1] (Fig. 6), Prediction 1's ρ (sample and concept level, exact conformity
against training frequency) and the final logit scale.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .summary import flatten

SWEEP_PREFIX = {
    "cosine": "alpha_sweep.",
    "euclidean": "alpha_sweep.euclidean.",
    "sq_euclidean": "alpha_sweep.sq_euclidean.",
}
ARM_METRICS = (
    ("i2t_accuracy", "{sweep}image_shift.accuracy_at_zero"),
    ("gap_svm_all_features", "separability.svm_all_accuracy"),
    ("gap_svm_top2", "separability.svm_top2_accuracy"),
    ("gap_mean_angle_deg", "covariance.mean_angle_deg"),
    ("thin_shell_rel_error_image", "thin_shell.image.rel_error"),
    ("thin_shell_rel_error_text", "thin_shell.text.rel_error"),
    ("mean_to_std_image", "covariance.image.mean_to_std_ratio"),
    ("mean_to_std_text", "covariance.text.mean_to_std_ratio"),
    ("argmin_alpha_all", "{sweep}image_shift.argmin_alpha.all"),
    ("trend_correct", "{sweep}image_shift.trend_0_1.correct"),
    ("trend_misclassified", "{sweep}image_shift.trend_0_1.misclassified"),
    ("rho_image", "concept_frequency.image.rho_conformity"),
    ("rho_text", "concept_frequency.text.rho_conformity"),
    ("rho_concept_image", "concept_frequency.image.concept_level.rho_conformity"),
    ("rho_concept_text", "concept_frequency.text.concept_level.rho_conformity"),
    ("logit_scale", "provenance.logit_scale"),
)
ESTIMATOR = "mean over the arm's models (seeds); 95% Student-t interval mean ± t(0.975, n-1)·sd/sqrt(n)"


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the finite ``values``: the Student-t interval for their mean.

    Fewer than two values give no interval (NaN bounds); none give NaN throughout.
    """
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], float)
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    m = float(x.mean())
    if n < 2:
        return m, math.nan, math.nan, 1
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return m, m - half, m + half, n


def _num(v):
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def arm_rows(summaries: Sequence[Mapping], arms: Mapping[str, Mapping]) -> list[dict]:
    """One row per (dataset, arm): the arm's models and, per metric, ``<name>``, ``<name>_ci_low``,
    ``<name>_ci_high`` (see :func:`t_interval`). ``arms[model] = {"arm": ..., "logits": ...}``; models without
    an arm are left out."""
    groups: dict[tuple[str, str], list[tuple[str, dict, str]]] = {}
    for s in summaries:
        a = arms.get(s.get("model")) or {}
        if not a.get("arm"):
            continue
        key = (str(s.get("dataset")), str(a["arm"]))
        groups.setdefault(key, []).append((s["model"], flatten(s), a.get("logits") or "cosine"))
    rows = []
    for (dataset, arm), members in sorted(groups.items()):
        logits = sorted({lg for _, _, lg in members})
        row = {
            "dataset": dataset,
            "arm": arm,
            "logits": "/".join(logits),
            "n_models": len(members),
            "models": " ".join(sorted(m for m, _, _ in members)),
        }
        for name, template in ARM_METRICS:
            vals = [_num(flat.get(template.format(sweep=SWEEP_PREFIX[lg]))) for _, flat, lg in members]
            mean, lo, hi, _ = t_interval(vals)
            row[name], row[f"{name}_ci_low"], row[f"{name}_ci_high"] = mean, lo, hi
        row["estimator"] = ESTIMATOR
        rows.append(row)
    return rows


def arm_columns() -> list[str]:
    cols = ["dataset", "arm", "logits", "n_models", "models"]
    for name, _ in ARM_METRICS:
        cols += [name, f"{name}_ci_low", f"{name}_ci_high"]
    return cols + ["estimator"]


def arms_markdown(rows: Sequence[Mapping], metrics: Sequence[str], digits: int = 2) -> str:
    """A Markdown table of ``rows`` (from :func:`arm_rows`): one line per arm, each metric as
    ``mean [low, high]`` (the 95% t-interval over seeds)."""

    def cell(r, name):
        m, lo, hi = r.get(name), r.get(f"{name}_ci_low"), r.get(f"{name}_ci_high")
        if m is None or not math.isfinite(m):
            return "—"
        if lo is None or not math.isfinite(lo):
            return f"{m:.{digits}f}"
        return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"

    head = "| arm | n | " + " | ".join(metrics) + " |"
    sep = "|---|---|" + "---|" * len(metrics)
    lines = [head, sep]
    for r in rows:
        lines.append(f"| {r['arm']} | {r['n_models']} | " + " | ".join(cell(r, m) for m in metrics) + " |")
    return "\n".join(lines)
