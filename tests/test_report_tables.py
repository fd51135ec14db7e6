"""The report's table pages (clipgeom.report_tables): escaping, rounding, the sort script, status classes."""

from __future__ import annotations

import html
import math
import re

import pytest

from clipgeom import report_tables as rt
from clipgeom.compare import write_comparison_csv, write_paper_table


@pytest.mark.parametrize(
    "value, text",
    [
        (0.123456789, "0.1235"),
        (7.5873, "7.587"),
        (7.5, "7.5"),
        (0.5000000001, "0.5"),
        (-0.2, "-0.2"),
        (1.0, "1"),
        (12345.6, "12350"),
        (999.96, "1000"),
        (0.00123456, "0.001235"),
        (1.23456e-05, "1.235e-05"),
        (123456789.0, "1.235e+08"),
        (0.0, "0"),
        (-1e-300, "-1e-300"),
        (3, "3"),
        (123456, "123456"),  # integers are counts: shown whole
        (True, "true"),
        (math.nan, "nan"),
        (-math.inf, "-inf"),
    ],
)
def test_numbers_to_four_significant_digits(value, text):
    assert rt.fmt_number(value) == text


def test_values_lists_and_missing():
    assert rt.fmt_value(None) == ""
    assert rt.fmt_value([93, 134, 0.123456]) == "[93, 134, 0.1235]"
    assert rt.fmt_value([None, 2.5]) == "[—, 2.5]"
    assert rt.fmt_value("holds") == "holds"
    assert rt.fmt_number(7.5873, rt.PAPER_DIGITS) == "7.5873"


@pytest.mark.parametrize(
    "text, value",
    [
        ("", None),
        ("3", 3),
        ("-0.25", -0.25),
        ("1e-05", 1e-05),
        ("0.12345678901234568", 0.12345678901234568),
        ("[93, 134, 494]", [93, 134, 494]),
        ("[1, null]", [1, None]),
        ("true", "true"),
        ("within tolerance", "within tolerance"),
        ("[not json", "[not json"),
        ("6e033a6511d3f574", "6e033a6511d3f574"),  # a checksum stays text
    ],
)
def test_csv_cells_parsed(text, value):
    assert rt.parse_cell(text) == value


def test_cells_keep_the_full_value_for_sorting_and_hover():
    c = rt.cell(0.123456789)
    assert (c.text, c.sort, c.title, c.cls) == ("0.1235", "0.123456789", "0.123456789", "num")
    assert rt.cell(0.5).title is None  # nothing hidden by rounding
    assert rt.cell(math.nan).sort is None
    assert rt.cell("fails").cls == "st-fails" and rt.cell("Not comparable").cls == "st-nc"
    assert rt.cell("anything else").cls is None
    i = rt.interval_cell(0.5123456, 0.4, 0.61)
    assert (i.text, i.note, i.sort) == ("0.5123", "[0.4, 0.61]", repr(0.5123456))
    assert rt.interval_cell(0.5, math.nan, math.nan).text == "0.5"
    assert rt.interval_cell(None, None, None).text == ""


def test_everything_is_escaped():
    evil = "<script>alert(\"x\")</script> & 'q'"
    page = rt.page_html(
        evil,
        [evil],
        [rt.table_html('t"1', [evil, ("k", evil)], [[evil, rt.Cell(evil, sort=evil, title=evil, note=evil)]])],
    )
    # the only <script> is the page's own sort script, at the end
    assert page.count("<script>") == 1 and page.rindex("<script>") > page.index("</table>")
    assert "alert(" not in page.split("<script>")[0].replace(html.escape('alert("x")'), "")
    assert html.escape(evil) in page
    assert 'id="t&quot;1"' in page
    assert f'title="{html.escape(evil, quote=True)} — click to sort"' in page
    assert f'data-sort="{html.escape(evil, quote=True)}"' in page


def test_page_is_self_contained_with_sort_script():
    page = rt.page_html("t", [], [rt.table_html("x", ["a"], [[1]] * 20)])
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page
    assert not re.search(r"\b(src|href)=", page), "no external resource"
    assert "table.sortable" in page and 'addEventListener("click"' in page and "aria-sort" in page
    assert 'data-filter="x"' in page  # long tables get a filter box
    assert "data-filter" not in rt.table_html("y", ["a"], [[1]] * 3)


def test_header_wraps_dotted_keys():
    t = rt.table_html("x", ["thin_shell.image.rel_error"], [[0.01]])
    assert "thin_<wbr>shell.<wbr>image.<wbr>rel_<wbr>error" in t


def significant_digits(text: str) -> int:
    """Significant digits of a decimal number as shown ('0.01208' -> 4); integers count every digit."""
    return len(text.lstrip("-").replace(".", "").lstrip("0")) if "." in text else len(text.lstrip("-"))


def test_significant_digits():
    assert [significant_digits(t) for t in ("0.01208", "7.5873", "12350", "-0.2", "0.1234567")] == [4, 5, 5, 1, 7]


SUMMARIES = [
    {
        "dataset": "demo",
        "model": f"m{i}",
        "demo": True,
        "thin_shell": {"image": {"rel_error": 0.0120812345 * (i + 1)}, "text": {"rel_error": 0.0072}},
        "separability": {"svm_top2_accuracy": 0.8125, "n_tag_features": 3 - i},
        "claims": {"a": "holds", "b": "fails", "c": "holds", "d": "not applicable"},
        "paper_comparison": [],
    }
    for i in range(2)
]


def test_summary_page_has_a_compact_row_per_pair():
    page = rt.summary_page(SUMMARIES, run_name="r<1>")
    rows = re.findall(r"<tr>(.*?)</tr>", page.split("<tbody>")[1])
    assert len(rows) == 2
    assert "<td>m0</td>" in rows[0] and ">0.01208</td>" in rows[0] and ">0.02416</td>" in rows[1]
    assert 'title="0.0120812345"' in rows[0]
    # claims tally: 2 hold, 1 fails, 1 not applicable
    assert re.findall(r'class="num"[^>]*>(\d)</td>', rows[0])[-3:] == ["2", "1", "1"]
    # only keys some summary has; nothing like the 160 columns of the cross-model table
    heads = re.findall(r"<th\b", page)
    assert len(heads) == 2 + 4 + 3  # dataset, model; the 4 SUMMARY_KEYS present; the claims tally
    assert "covariance" not in page.split("<table")[1]
    assert "Demo run" in page and "r&lt;1&gt;" in page


def test_claims_page_tallies_and_colours_statuses(tmp_path):
    rows = [
        {"claim": "thin", "statement": "shell <thin>", "source": "§3", "kind": "qualitative", "key": "k",
         "paper": None, "run": 0.0120812345, "tolerance": "rel_error <= 0.01", "status": "fails",
         "comparable": False, "why": "not the paper's setup"},
        {"claim": "mu", "statement": "mu", "source": "§3", "kind": "number", "key": "k2", "paper": 7.5873,
         "run": 7.29512, "tolerance": "±0.02 relative", "status": "not comparable", "comparable": False, "why": "x"},
        {"claim": "gap", "statement": "gap", "source": "§4", "kind": "qualitative", "key": "k3", "paper": None,
         "run": 1.0, "tolerance": ">= 0.9", "status": "holds", "comparable": False, "why": "x"},
    ]  # fmt: skip
    write_paper_table(tmp_path / "paper_vs_run.csv", rows)
    _, read = rt.read_table(tmp_path / "paper_vs_run.csv")
    assert read[0]["run"] == 0.0120812345 and read[0]["comparable"] == "false" and read[0]["paper"] is None
    page = rt.claims_page([("demo", "a", read), ("demo", "b", read[:1])], run_name="r")
    tally, claims = page.split("<h2>Every claim</h2>")
    assert '<td class="num st-holds" data-sort="1">1</td>' in tally
    assert '<td class="num" data-sort="0">0</td>' in tally  # no colour on a zero count
    body = claims.split("<tbody>")[1]
    assert len(re.findall(r"<tr>", body)) == 4
    assert '<td class="st-fails">fails</td>' in body and '<td class="st-holds">holds</td>' in body
    assert '<td class="st-nc">not comparable</td>' in body
    assert ">7.5873</td>" in body and ">7.295</td>" in body and ">0.01208</td>" in body  # paper kept, run rounded
    assert "shell &lt;thin&gt; — §3" in body
    assert all(significant_digits(t) <= rt.PAPER_DIGITS for t in re.findall(r">(-?[\d.]+)</td>", body))


def test_comparison_page_is_the_csv_on_its_side(tmp_path):
    from clipgeom.compare import comparison_table

    columns, rows = comparison_table(SUMMARIES)
    write_comparison_csv(tmp_path / "summary_table.csv", columns, rows)
    page = rt.comparison_page(*rt.read_table(tmp_path / "summary_table.csv"), run_name="r")
    heads = re.findall(r"<th\b[^>]*>(.*?)</th>", page)
    assert heads == ["key", "demo × m0", "demo × m1"]
    body = page.split("<tbody>")[1]
    assert '<td data-sort="thin_shell.image.rel_error">thin_shell.image.rel_error</td>' in body
    assert '<td class="st-holds">holds</td>' in body  # claims.* columns coloured
    assert len(re.findall(r"<tr>", body)) == len(columns) - 2


def test_arms_page_shows_mean_and_interval(tmp_path):
    from clipgeom.arms import arm_columns, arm_rows

    summaries = [
        {"dataset": "w", "model": f"{arm}-{s}", "separability": {"svm_all_accuracy": 0.9 + 0.01 * s + off}}
        for arm, off in (("cos", 0.0), ("euc", -0.3))
        for s in range(3)
    ]
    arms = {s["model"]: {"arm": s["model"].split("-")[0], "logits": "cosine"} for s in summaries}
    write_comparison_csv(tmp_path / "arms_table.csv", arm_columns(), arm_rows(summaries, arms))
    page = rt.arms_page(*rt.read_table(tmp_path / "arms_table.csv"), run_name="r")
    body = page.split("<tbody>")[1]
    assert len(re.findall(r"<tr>", body)) == 2
    assert re.search(r'data-sort="0\.91\d*"[^>]*>0\.91<div class="note">\[0\.8852, 0\.9348\]</div></td>', body), body
    assert 'title="models: cos-0 cos-1 cos-2"' in body
    assert "gap_svm_all_features" in page and "Student-t" in page
    empty = rt.arms_page(arm_columns(), [], run_name="r")
    assert "<table" not in empty and "No experiment arms" in empty
