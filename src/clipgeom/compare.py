"""Cross-model comparison: every headline number of ``summary.json`` across datasets and models.

``results/{dataset}/{model}/summary.json`` nests each stage's headline numbers under the stage's name
(see :mod:`clipgeom.summary`). Here each summary is flattened to dotted keys
(``covariance.image.mean_to_std_ratio``) and the summaries of a run become one table: one row per
dataset × model, one column per flattened key (the union over all rows; a key a row lacks is empty).
The question the table answers is the paper's, asked of many models: is the double ellipsoid universal?
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence

from .outputs import write_csv
from .summary import flatten

ID_COLUMNS = ("dataset", "model")

# Top-level summary.json entries that are not numbers of a stage: the demo note (a sentence) and the
# paper comparison (rows already in paper_vs_run.csv). The qualitative claims (``claims.<id>``: holds /
# fails / not applicable) do get a column each.
SKIP_KEYS = ("note", "paper_comparison")

# The main headline numbers plotted in the comparison grid, in panel order: shell-ness (Eqs. 1-4),
# offset from the origin (Properties 3-5), the modality gap (SVM on two features, tag features, mean angle), conformity
# (Eq. 11), where the loss and the KL are lowest in alpha (Eq. 9) and EuCLIP's distance from [ROOT].
# fnmatch patterns over the flattened keys; a pattern that matches nothing is left out of the figure.
HEADLINE_PATTERNS = (
    "thin_shell.*.rel_error",
    "covariance.*.mean_to_std_ratio",
    "covariance.*.effective_rank",
    "covariance.mean_angle_deg",
    "separability.svm_top2_accuracy",
    "separability.n_tag_features",
    "conformity.*.pearson",
    "alpha_sweep.image_shift.argmin_alpha.all",
    "kl_matching.argmin_alpha",
    "kl_matching.kl_at_zero",
    "origin_distance.*.median_root_cosine_distance",
)


def flatten_summary(summary: Mapping) -> dict:
    """summary.json -> {dotted key: value}, dataset and model first; the note and paper rows left out.

    Nested mappings become dotted keys; lists (e.g. ``separability.top2_features``) stay values.
    """
    flat = {k: summary.get(k) for k in ID_COLUMNS}
    rest = {k: v for k, v in summary.items() if k not in SKIP_KEYS and k not in ID_COLUMNS}
    flat.update(flatten(rest))
    return flat


def summary_rows(summary: Mapping) -> list[tuple[str, object]]:
    """(key, value) rows of one summary.json: the key/value table of one dataset × model."""
    return list(flatten_summary(summary).items())


def comparison_table(summaries: Iterable[Mapping]) -> tuple[list[str], list[dict]]:
    """(columns, rows): one row per summary (in the order given), one column per flattened key.

    Columns are ``dataset``, ``model`` and then the union of every row's keys in first-seen order, so
    the stages keep summary.json's order and a key only some models have still gets its column.
    """
    rows = [flatten_summary(s) for s in summaries]
    columns: list[str] = list(ID_COLUMNS)
    seen = set(columns)
    for r in rows:
        for k in r:
            if k not in seen:
                seen.add(k)
                columns.append(k)
    return columns, rows


def cell(value) -> str | int | float:
    """A CSV cell: lists/dicts as JSON, None and non-finite floats empty, bools as true/false."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return value


def _write_rows(path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Rows -> the project's one atomic CSV writer, cells formatted by :func:`cell`."""
    rows = [[cell(v) for v in r] for r in rows]
    write_csv(path, {h: [r[i] for r in rows] for i, h in enumerate(header)})


def write_comparison_csv(path, columns: Sequence[str], rows: Sequence[Mapping]) -> None:
    """The comparison table as CSV (a key a row lacks is an empty cell)."""
    _write_rows(path, columns, ([r.get(c) for c in columns] for r in rows))


def write_summary_table(path, summary: Mapping) -> None:
    """One summary.json as a two-column key,value CSV."""
    _write_rows(path, ("key", "value"), summary_rows(summary))


def write_paper_table(path, rows: Sequence[Mapping]) -> None:
    """paper_vs_run.csv: one row per claim (columns: clipgeom.paper.COLUMNS)."""
    from .paper import COLUMNS

    _write_rows(path, COLUMNS, ([r.get(c) for c in COLUMNS] for r in rows))


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def numeric_columns(columns: Sequence[str], rows: Sequence[Mapping]) -> list[str]:
    """Columns holding a finite number in at least one row and nothing but numbers or gaps elsewhere."""
    out = []
    for c in columns:
        if c in ID_COLUMNS:
            continue
        vals = [r.get(c) for r in rows]
        present = [v for v in vals if v is not None]
        if (
            present
            and any(is_number(v) for v in present)
            and all(is_number(v) or (isinstance(v, float) and not math.isfinite(v)) for v in present)
        ):
            out.append(c)
    return out


def headline_keys(
    columns: Sequence[str], rows: Sequence[Mapping] | None = None, patterns: Sequence[str] = HEADLINE_PATTERNS
) -> list[str]:
    """The numeric columns matching ``patterns``, in pattern order (each key once)."""
    candidates = numeric_columns(columns, rows) if rows is not None else [c for c in columns if c not in ID_COLUMNS]
    out: list[str] = []
    for pat in patterns:
        for c in candidates:
            if c not in out and fnmatch.fnmatchcase(c, pat):
                out.append(c)
    return out
