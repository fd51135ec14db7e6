"""The run's tables as self-contained HTML pages, shown in the main panel of ``snakemake --report``.

Four pages (``results/comparison/{run_name}/report/<kind>/index.html``, rule ``report_tables``):

* ``summary`` — a compact set of headline numbers (:data:`SUMMARY_KEYS`), one row per dataset × model, with a
  tally of the papers' qualitative claims;
* ``claims`` — every dataset × model's ``paper_vs_run.csv`` rows (claim, paper, run, tolerance, status,
  comparable, why), after a per-pair tally of the statuses;
* ``comparison`` — the cross-model table ``summary_table.csv`` turned on its side: one row per flattened
  ``summary.json`` key, one column per dataset × model;
* ``arms`` — ``arms_table.csv``: each experiment arm's numbers as ``mean [95% interval]`` over its seeds.

Everything here is a pure function (rows in, an HTML string out) except :func:`read_table`, which reads a CSV
written by :mod:`clipgeom.compare`. Every value and attribute is HTML-escaped; numbers are shown to
:data:`DIGITS` significant digits (the full value stays in the cell's ``data-sort`` and ``title``); statuses
get a CSS class (:data:`STATUS_CLASS`); clicking a header sorts a table (a few lines of inline JavaScript, no
network); long tables get a filter box.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

DIGITS = 4  # significant digits shown
PAPER_DIGITS = 6  # the papers' own numbers (transcribed as printed, e.g. 7.5873) keep up to this many

# Status of a claim (clipgeom.paper) -> CSS class of its cell.
STATUS_CLASS = {
    "holds": "st-holds",
    "fails": "st-fails",
    "not applicable": "st-na",
    "within tolerance": "st-within",
    "outside tolerance": "st-outside",
    "not comparable": "st-nc",
}
STATUS_ORDER = tuple(STATUS_CLASS)

# The headline numbers of the summary page, in column order; a key no summary has is left out.
SUMMARY_KEYS = (
    "thin_shell.image.rel_error",
    "thin_shell.text.rel_error",
    "covariance.image.mean_to_std_ratio",
    "covariance.text.mean_to_std_ratio",
    "covariance.image.effective_rank",
    "covariance.text.effective_rank",
    "covariance.mean_angle_deg",
    "separability.svm_top2_accuracy",
    "separability.svm_all_accuracy",
    "separability.n_tag_features",
    "alpha_sweep.image_shift.accuracy_at_zero",
    "alpha_sweep.image_shift.argmin_alpha.all",
    "conformity.image.pearson",
    "conformity.text.pearson",
    "kl_matching.kl_at_zero",
    "kl_matching.argmin_alpha",
    "origin_distance.image.median_root_cosine_distance",
    "origin_distance.text.median_root_cosine_distance",
    "concept_frequency.image.rho_conformity",
    "concept_frequency.text.rho_conformity",
)

# The columns of paper_vs_run.csv shown on the claims page (the statement and source go into the claim cell).
# (status beside the claim, so that it is in view without scrolling sideways)
CLAIM_COLUMNS = ("claim", "status", "paper", "run", "tolerance", "comparable", "why")

# Tables with more rows than this get a filter box.
FILTER_MIN_ROWS = 15

_INT_RE = re.compile(r"[-+]?\d+")
_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|[-+]?(nan|inf|infinity)", re.I)


# ------------------------------------------------------------------ values
def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def fmt_number(v: float, digits: int = DIGITS) -> str:
    """``v`` to ``digits`` significant digits, trailing zeros dropped: 0.123456 -> 0.1235, 7.5 -> 7.5,
    12345.6 -> 12350, 1.23456e-05 -> 1.235e-05; integers are shown whole, non-finite floats as nan / inf."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    v = float(v)
    if not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    exp = math.floor(math.log10(abs(v)))
    if exp < -3 or exp >= 6:
        mantissa, e = f"{v:.{digits - 1}e}".split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{e}"
    ndigits = digits - 1 - exp
    r = round(v, ndigits)
    if r == 0:
        return "0"
    if ndigits <= 0:
        return f"{r:.0f}"
    return f"{r:.{ndigits}f}".rstrip("0").rstrip(".")


def fmt_value(v, digits: int = DIGITS) -> str:
    """Any table value as text: numbers rounded (:func:`fmt_number`), lists element by element, None empty."""
    if v is None:
        return ""
    if is_number(v) or isinstance(v, bool):
        return fmt_number(v, digits)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_item(x, digits) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{" + ", ".join(f"{k}: {_item(x, digits)}" for k, x in v.items()) + "}"
    return str(v)


def _item(v, digits: int) -> str:
    """An element of a list: as :func:`fmt_value`, with a missing value shown as —."""
    return "—" if v is None else fmt_value(v, digits)


def parse_cell(text: str):
    """A CSV cell back to a value: '' -> None, integers and floats as numbers, JSON lists and objects parsed;
    anything else (true/false, statuses, sentences) stays text."""
    t = text.strip()
    if t == "":
        return None
    if _INT_RE.fullmatch(t):
        return int(t)
    if _FLOAT_RE.fullmatch(t):
        return float(t)
    if t[0] in "[{" and t[-1] in "]}":
        try:
            return json.loads(t)
        except ValueError:
            return text
    return text


def read_table(path: str | Path) -> tuple[list[str], list[dict]]:
    """(columns, rows) of a CSV written by :mod:`clipgeom.compare`, each cell through :func:`parse_cell`."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        columns = next(reader, [])
        rows = [{c: parse_cell(x) for c, x in zip(columns, rec, strict=False)} for rec in reader]
    return columns, rows


# ------------------------------------------------------------------ cells and tables
@dataclass(frozen=True)
class Cell:
    """One table cell: its text (escaped on output), the key it sorts by, a CSS class and a tooltip."""

    text: str
    sort: str | None = None
    cls: str | None = None
    title: str | None = None
    note: str | None = None  # a second, smaller line (e.g. a claim's statement)


def status_class(text) -> str | None:
    return STATUS_CLASS.get(str(text).strip().lower()) if isinstance(text, str) else None


def cell(v, digits: int = DIGITS) -> Cell:
    """A value as a cell: numbers rounded, with the full value as sort key and tooltip; statuses coloured."""
    if isinstance(v, Cell):
        return v
    text = fmt_value(v, digits)
    if is_number(v):
        full = repr(v) if isinstance(v, float) else str(v)
        sort = full if math.isfinite(v) else None
        return Cell(text, sort=sort, cls="num", title=full if full != text else None)
    return Cell(text, cls=status_class(v))


def interval_cell(mean, low, high, digits: int = DIGITS) -> Cell:
    """The mean, with ``[low, high]`` on a second line (sorted by the mean); just the mean where there is no
    interval."""
    if not is_number(mean) or not math.isfinite(mean):
        return Cell("")
    note = None
    if is_number(low) and is_number(high) and math.isfinite(low) and math.isfinite(high):
        note = f"[{fmt_number(low, digits)}, {fmt_number(high, digits)}]"
    title = f"mean {mean!r}; 95% interval [{low!r}, {high!r}]"
    return Cell(fmt_number(mean, digits), sort=repr(float(mean)), cls="num", title=title, note=note)


def _attr(name: str, value) -> str:
    return "" if value is None else f' {name}="{html.escape(str(value), quote=True)}"'


def _td(c: Cell) -> str:
    body = html.escape(c.text)
    if c.note:
        body += f'<div class="note">{html.escape(c.note)}</div>'
    return f"<td{_attr('class', c.cls)}{_attr('data-sort', c.sort)}{_attr('title', c.title)}>{body}</td>"


def _header_text(name: str) -> str:
    """A column name, escaped, with break opportunities after dots and underscores (long dotted keys wrap)."""
    return re.sub(r"([._])", r"\1<wbr>", html.escape(name))


def table_html(
    table_id: str,
    columns: Sequence[str | tuple[str, str] | tuple[str, str, str]],
    rows: Iterable[Sequence],
    *,
    filter_box: bool | None = None,
    caption: str | None = None,
) -> str:
    """One sortable table. ``columns``: names or (name, tooltip); ``rows``: sequences of values or
    :class:`Cell` s, one per column. A filter box is added above tables of more than
    :data:`FILTER_MIN_ROWS` rows unless ``filter_box`` says otherwise."""
    rows = [[cell(v) for v in r] for r in rows]
    heads = []
    for col in columns:
        name, tip, width = (*col, None)[:3] if isinstance(col, tuple) else (col, col, None)
        attrs = _attr("class", width) + _attr("title", f"{tip} — click to sort")
        heads.append(f'<th{attrs} scope="col">{_header_text(name)}</th>')
    body = "\n".join("<tr>" + "".join(_td(c) for c in r) + "</tr>" for r in rows)
    if filter_box is None:
        filter_box = len(rows) > FILTER_MIN_ROWS
    out = []
    if filter_box:
        out.append(
            f'<p class="tools"><input type="search" placeholder="filter rows" aria-label="filter rows"'
            f'{_attr("data-filter", table_id)}> <span class="count" data-count-for="{html.escape(table_id)}">'
            f"{len(rows)} rows</span></p>"
        )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    out.append(
        f'<div class="wrap"><table class="sortable"{_attr("id", table_id)}>{cap}'
        f"<thead><tr>{''.join(heads)}</tr></thead>\n<tbody>\n{body}\n</tbody></table></div>"
    )
    return "\n".join(out)


STYLE = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px 20px;color:#1f2937;background:#fff}
h1{font-size:20px;margin:0 0 6px}h2{font-size:16px;margin:20px 0 6px}
p{margin:6px 0;max-width:70em}.meta{color:#4b5563;font-size:12px}
.demo{background:#fef3c7;border:1px solid #f59e0b;padding:4px 8px;border-radius:4px;display:inline-block}
.wrap{overflow:auto;max-width:100%}
table{border-collapse:collapse;font-size:13px;margin:4px 0 12px}
caption{text-align:left;font-weight:600;padding:4px 0}
th,td{border:1px solid #d1d5db;padding:3px 6px;vertical-align:top}
td{max-width:32em;overflow-wrap:break-word}
th.w-wide{min-width:16em}th.w-mid{min-width:9em}
th{background:#f3f4f6;cursor:pointer;user-select:none;text-align:left;position:sticky;top:0;min-width:3em}
th:hover{background:#e5e7eb}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:10px}
th[aria-sort=descending]::after{content:" \\25BC";font-size:10px}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td[class^=st-],td[class*=" st-"]{white-space:nowrap}
tbody tr:nth-child(even){background:#f9fafb}
.note{color:#6b7280;font-size:11px;margin-top:2px}
.st-holds,.st-within{background:#dcfce7!important;color:#14532d}
.st-fails,.st-outside{background:#fee2e2!important;color:#7f1d1d}
.st-na,.st-nc{background:#e5e7eb!important;color:#374151}
.tools input{font:inherit;padding:2px 6px;width:22em}.count{color:#6b7280;font-size:12px}
.empty{color:#6b7280;font-style:italic}
"""

# Click a header: sort its table by that column (numbers by their full value, text naturally, empty cells last;
# a second click reverses). Type in a filter box: hide the rows not containing the text.
SCRIPT = """
(function () {
  function key(td) {
    if (!td) return null;
    var s = td.getAttribute("data-sort");
    var t = s !== null ? s : td.textContent.trim();
    if (t === "") return null;
    var n = Number(t);
    return s !== null && isFinite(n) ? n : t;
  }
  function cmp(a, b, dir) {
    if (a === null || b === null) return (a === null) - (b === null);
    var na = typeof a === "number", nb = typeof b === "number";
    if (na !== nb) return na ? -1 : 1;
    if (na) return dir * (a < b ? -1 : a > b ? 1 : 0);
    return dir * String(a).localeCompare(String(b), undefined, {numeric: true});
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, i) {
      th.addEventListener("click", function () {
        var dir = th.getAttribute("aria-sort") === "ascending" ? -1 : 1;
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", dir === 1 ? "ascending" : "descending");
        var body = table.tBodies[0];
        Array.prototype.map.call(body.rows, function (r, j) { return [key(r.cells[i]), j, r]; })
          .sort(function (x, y) { return cmp(x[0], y[0], dir) || x[1] - y[1]; })
          .forEach(function (x) { body.appendChild(x[2]); });
      });
    });
  });
  document.querySelectorAll("input[data-filter]").forEach(function (input) {
    var id = input.getAttribute("data-filter"), table = document.getElementById(id);
    var count = document.querySelector('[data-count-for="' + id + '"]');
    input.addEventListener("input", function () {
      var q = input.value.toLowerCase(), shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (r) {
        var hit = r.textContent.toLowerCase().indexOf(q) >= 0;
        r.style.display = hit ? "" : "none";
        shown += hit ? 1 : 0;
      });
      if (count) count.textContent = shown + " of " + table.tBodies[0].rows.length + " rows";
    });
  });
})();
"""


def page_html(title: str, intro: Sequence[str], sections: Sequence[str], *, demo: bool = False, meta: str = "") -> str:
    """A whole page: title, intro paragraphs (plain text, escaped), a demo warning, the sections (HTML made here),
    inline style and the sort/filter script. No external resource."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if demo:
        parts.append(
            '<p class="demo"><b>Demo run</b>: generated data and tiny models, not CLIP — the numbers show what each '
            "stage measures, not the paper's values.</p>"
        )
    parts += [f"<p>{html.escape(p)}</p>" for p in intro]
    if meta:
        parts.append(f'<p class="meta">{html.escape(meta)}</p>')
    parts += list(sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + f"\n<script>{SCRIPT}</script>\n</body></html>\n"
    )


def _empty(text: str) -> str:
    return f'<p class="empty">{html.escape(text)}</p>'


# ------------------------------------------------------------------ the four pages
def _flat(summary: Mapping) -> dict:
    from .compare import flatten_summary

    return flatten_summary(summary)


def summary_page(
    summaries: Sequence[Mapping], *, run_name: str = "", keys: Sequence[str] = SUMMARY_KEYS, demo: bool | None = None
) -> str:
    """Headline numbers, one row per dataset × model: the keys of ``keys`` that some summary has, and how many of
    the papers' qualitative claims hold / fail / are not applicable (``summary.json`` ``claims``)."""
    flats = [_flat(s) for s in summaries]
    shown = [k for k in keys if any(k in f for f in flats)]
    columns: list = ["dataset", "model"]
    columns += [(k, k) for k in shown]
    columns += [
        ("claims hold", "qualitative claims of the papers that hold (summary.json claims.*)"),
        ("claims fail", "qualitative claims of the papers that fail"),
        ("claims n/a", "qualitative claims not applicable here"),
    ]
    rows = []
    for s, f in zip(summaries, flats, strict=True):
        statuses = [str(v) for v in (s.get("claims") or {}).values()]
        rows.append(
            [
                s.get("dataset"),
                s.get("model"),
                *(f.get(k) for k in shown),
                statuses.count("holds"),
                statuses.count("fails"),
                statuses.count("not applicable"),
            ]
        )
    demo = any(bool(s.get("demo")) for s in summaries) if demo is None else demo
    intro = [
        "The headline numbers of every dataset × model of this run (one row each; summary.json under "
        "results/{dataset}/{model}/). Column names are summary.json keys: thin_shell.*.rel_error (Eqs. 1–4, small "
        "means a thin shell), covariance.*.mean_to_std_ratio (‖m‖/‖σ‖, Properties 3–5), separability.* (the modality "
        "gap, Eq. 5 and Fig. 2), conformity.*.pearson (Eq. 11), argmin_alpha (where the loss or the KL is lowest in "
        "α, Eq. 9, Figs. 6 and 11), concept_frequency.*.rho_conformity (Prediction 1).",
        f"Numbers to {DIGITS} significant digits (hover a cell for the full value); click a header to sort. Every "
        "key of every summary is in the cross-model table; each claim, with the paper's value, in the claims table.",
    ]
    table = table_html("summary", columns, rows) if rows else _empty("No dataset × model in this run.")
    return page_html(
        "Summary: headline numbers per dataset × model",
        intro,
        [table],
        demo=demo,
        meta=_meta(run_name, f"{len(rows)} dataset × model"),
    )


def claims_page(tables: Sequence[tuple[str, str, Sequence[Mapping]]], *, run_name: str = "", demo: bool = False) -> str:
    """Every dataset × model's paper_vs_run rows, after a tally of their statuses. ``tables``:
    ``(dataset, model, rows)`` with rows as read from ``paper_vs_run.csv`` (columns of clipgeom.paper.COLUMNS)."""
    tally_cols: list = ["dataset", "model"] + [(s, f"claims with status {s!r}") for s in STATUS_ORDER]
    tally = []
    rows = []
    for dataset, model, claims in tables:
        statuses = [str(r.get("status") or "") for r in claims]
        tally.append([dataset, model, *(_count_cell(statuses.count(s), s) for s in STATUS_ORDER)])
        for r in claims:
            claim = str(r.get("claim") or "")
            note = " — ".join(str(r[k]) for k in ("statement", "source") if r.get(k))
            row = [dataset, model, Cell(claim, sort=claim, title=str(r.get("key") or "") or None, note=note or None)]
            # the paper's values are transcribed to the digits it prints: shown with up to PAPER_DIGITS
            row += [r.get("status"), cell(r.get("paper"), PAPER_DIGITS), *(r.get(c) for c in CLAIM_COLUMNS[3:])]
            rows.append(row)
    columns: list = ["dataset", "model"]
    columns += [
        (
            "claim",
            "the claim (clipgeom.paper.CLAIMS), its statement and where the paper makes it; hover: its key",
            "w-wide",
        ),
        ("status", "within / outside tolerance / not comparable (numbers); holds / fails / not applicable"),
        ("paper", "the paper's value"),
        ("run", "this run's value"),
        ("tolerance", "agreement band, or the qualitative test", "w-mid"),
        ("comparable", "whether the row can be set beside the paper"),
        ("why", "the condition that decides comparability", "w-wide"),
    ]
    intro = [
        "Every claim of the papers (clipgeom.paper.CLAIMS) judged on every dataset × model: the rows of "
        "results/{dataset}/{model}/paper_vs_run.csv. A number is comparable with the paper's only on the paper's "
        "setup (COCO val2017 × ViT-B-32/openai) with the paper's estimator; qualitative claims are tested on any "
        "model (holds / fails / not applicable).",
        f"Numbers to {DIGITS} significant digits (hover for the full value); click a header to sort, type to filter. "
        "The CSV also has the estimator and a null or control baseline per claim.",
    ]
    sections = []
    if tally:
        sections.append("<h2>Statuses per dataset × model</h2>")
        sections.append(table_html("tally", tally_cols, tally, filter_box=False))
        sections.append("<h2>Every claim</h2>")
        sections.append(table_html("claims", columns, rows))
    else:
        sections.append(_empty("No dataset × model in this run."))
    return page_html(
        "The papers' claims against this run",
        intro,
        sections,
        demo=demo,
        meta=_meta(run_name, f"{len(tables)} dataset × model, {len(rows)} claim rows"),
    )


def _count_cell(n: int, status: str) -> Cell:
    return Cell(str(n), sort=str(n), cls="num " + STATUS_CLASS[status] if n else "num")


def comparison_page(columns: Sequence[str], rows: Sequence[Mapping], *, run_name: str = "", demo: bool = False) -> str:
    """The cross-model table on its side: one row per key of ``columns`` (the dataset and model columns become the
    header), one column per row of ``rows`` (a dataset × model), as in ``summary_table.csv``."""
    pairs = [f"{r.get('dataset')} × {r.get('model')}" for r in rows]
    keys = [c for c in columns if c not in ("dataset", "model")]
    head: list = [("key", "the flattened summary.json key <stage>.<modality>.<number>", "w-wide")]
    head += [(p, p) for p in pairs]
    body = [[Cell(k, sort=k), *(r.get(k) for r in rows)] for k in keys]
    intro = [
        "Every number of every summary.json of this run, side by side (summary_table.csv, turned on its side so "
        "that each key is a row): one column per dataset × model. Keys are <stage>.<modality>.<number>; claims.* "
        "are the papers' qualitative claims (holds / fails / not applicable); provenance.* where the embeddings "
        "came from.",
        f"Numbers to {DIGITS} significant digits (hover for the full value); click a header to sort by that model, "
        "type to filter the keys (e.g. 'rel_error').",
    ]
    table = table_html("comparison", head, body) if rows else _empty("No dataset × model in this run.")
    return page_html(
        "Cross-model table: every number, every dataset × model",
        intro,
        [table],
        demo=demo,
        meta=_meta(run_name, f"{len(rows)} dataset × model, {len(keys)} keys"),
    )


def arms_page(columns: Sequence[str], rows: Sequence[Mapping], *, run_name: str = "", demo: bool = False) -> str:
    """``arms_table.csv``: one row per (dataset, arm), each metric as ``mean [low, high]`` over the arm's models."""
    ident = [c for c in ("dataset", "arm", "logits", "n_models") if c in columns]  # models: the arm's tooltip
    metrics = [c for c in columns if f"{c}_ci_low" in columns and f"{c}_ci_high" in columns]
    estimator = next((str(r["estimator"]) for r in rows if r.get("estimator")), "")
    head: list = list(ident) + [(m, f"{m}: mean [95% interval] over seeds") for m in metrics]
    body = [
        [Cell(str(r.get(c) or ""), title=f"models: {r.get('models')}") if c == "arm" else r.get(c) for c in ident]
        + [interval_cell(r.get(m), r.get(f"{m}_ci_low"), r.get(f"{m}_ci_high")) for m in metrics]
        for r in rows
    ]
    intro = [
        "Experiment arms (models.<name>.arm): the models of one arm are one treatment trained with different seeds; "
        "each number is their mean with a 95% Student-t interval [low, high] over seeds (arms_table.csv). Each arm "
        "is read in the geometry it was trained with.",
        f"Numbers to {DIGITS} significant digits (hover for the full values); click a header to sort by the mean.",
    ]
    if estimator:
        intro.append(f"Estimator: {estimator}.")
    if rows:
        table = table_html("arms", head, body)
    else:
        table = _empty(
            "No experiment arms in this run: no model sets models.<name>.arm (config/experiment.yaml does), so "
            "arms_table.csv has no rows."
        )
    return page_html(
        "Experiment arms: means over seeds", intro, [table], demo=demo, meta=_meta(run_name, f"{len(rows)} arm(s)")
    )


def _meta(run_name: str, what: str) -> str:
    return f"run_name {run_name} · {what}" if run_name else what
