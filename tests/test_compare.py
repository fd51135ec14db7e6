"""Cross-model comparison: flattening summary.json and the one-row-per-dataset×model table, on hand-made
summaries (no workflow run)."""

from __future__ import annotations

import csv
import json

import pytest

from clipgeom.compare import (
    comparison_table,
    flatten_summary,
    headline_keys,
    numeric_columns,
    summary_rows,
    write_comparison_csv,
    write_summary_table,
)


def _summary(dataset, model, ratio_img, ratio_txt, acc, *, extra=None, demo=False, paper=False):
    s = {
        "dataset": dataset,
        "model": model,
        "demo": demo,
        "provenance": {"arch": "ViT-B-32", "pretrained": "openai", "normalized": False},
        "thin_shell": {"image": {"rel_error": 0.0018, "mu_norm": 7.5}, "text": {"rel_error": 0.002, "mu_norm": 8.1}},
        "covariance": {
            "image": {"mean_to_std_ratio": ratio_img},
            "text": {"mean_to_std_ratio": ratio_txt},
            "mean_angle_deg": 80.0,
        },
        "separability": {"svm_top2_accuracy": acc, "top2_features": [93, 134], "n_tag_features": 9},
        "kl_matching": {"kl_at_zero": None, "argmin_alpha": 0.0},
    }
    if demo:
        s["note"] = "DEMO RUN: numbers say nothing about CLIP."
    if paper:
        s["paper_comparison"] = [
            {
                "key": "covariance.image.mean_to_std_ratio",
                "paper": 0.94,
                "run": ratio_img,
                "abs_diff": abs(ratio_img - 0.94),
            }
        ]
    if extra:
        s.update(extra)
    return s


def test_flatten_summary_dotted_keys_and_skips():
    flat = flatten_summary(_summary("coco", "ViT-B-32-openai", 0.94, 1.03, 1.0, demo=True, paper=True))
    keys = list(flat)
    assert keys[:2] == ["dataset", "model"]
    assert flat["covariance.image.mean_to_std_ratio"] == 0.94
    assert flat["covariance.text.mean_to_std_ratio"] == 1.03
    assert flat["thin_shell.image.rel_error"] == 0.0018
    assert flat["separability.top2_features"] == [93, 134]  # lists stay values
    assert flat["provenance.arch"] == "ViT-B-32"
    assert flat["demo"] is True
    # the demo sentence and the paper rows are not headline numbers
    assert "note" not in flat and not any(k.startswith("paper_comparison") for k in flat)
    # stage order is summary.json's order
    assert (
        keys.index("thin_shell.image.rel_error")
        < keys.index("covariance.image.mean_to_std_ratio")
        < keys.index("separability.svm_top2_accuracy")
    )


def test_comparison_table_one_row_per_pair_union_of_columns(tmp_path):
    a = _summary("coco", "B-32", 0.94, 1.03, 1.0)
    b = _summary("coco", "L-14", 1.2, 0.9, 0.98, extra={"alpha_sweep": {"image_shift": {"argmin_alpha": {"all": 0.1}}}})
    c = _summary("flickr", "B-32", 0.8, 1.1, 1.0)
    del c["kl_matching"]
    columns, rows = comparison_table([a, b, c])
    assert [(r["dataset"], r["model"]) for r in rows] == [("coco", "B-32"), ("coco", "L-14"), ("flickr", "B-32")]
    assert columns[:2] == ["dataset", "model"]
    assert len(columns) == len(set(columns))
    # a key only one model has still gets its column; the others are empty there
    assert "alpha_sweep.image_shift.argmin_alpha.all" in columns
    assert "kl_matching.argmin_alpha" in columns

    out = tmp_path / "cmp.csv"
    write_comparison_csv(out, columns, rows)
    with open(out, newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 3
    assert list(table[0]) == columns
    assert float(table[0]["covariance.image.mean_to_std_ratio"]) == 0.94
    assert float(table[1]["covariance.image.mean_to_std_ratio"]) == 1.2
    assert table[0]["alpha_sweep.image_shift.argmin_alpha.all"] == ""  # missing -> empty
    assert float(table[1]["alpha_sweep.image_shift.argmin_alpha.all"]) == 0.1
    assert table[2]["kl_matching.argmin_alpha"] == ""
    assert table[0]["kl_matching.kl_at_zero"] == ""  # None -> empty
    assert json.loads(table[0]["separability.top2_features"]) == [93, 134]  # lists as JSON
    assert table[0]["provenance.normalized"] == "false"
    # floats round-trip exactly
    assert float(table[0]["thin_shell.image.rel_error"]) == 0.0018


def test_numeric_and_headline_columns():
    a = _summary(
        "coco", "B-32", 0.94, 1.03, 1.0, extra={"alpha_sweep": {"image_shift": {"argmin_alpha": {"all": -0.1}}}}
    )
    b = _summary("coco", "L-14", 1.2, 0.9, 0.98)
    columns, rows = comparison_table([a, b])
    num = numeric_columns(columns, rows)
    assert "covariance.image.mean_to_std_ratio" in num
    assert "alpha_sweep.image_shift.argmin_alpha.all" in num  # numeric where present, empty elsewhere
    for not_numeric in (
        "dataset",
        "model",
        "demo",
        "provenance.arch",
        "provenance.normalized",
        "separability.top2_features",
        "kl_matching.kl_at_zero",
    ):
        assert not_numeric not in num, not_numeric
    head = headline_keys(columns, rows)
    assert head[:3] == ["thin_shell.image.rel_error", "thin_shell.text.rel_error", "covariance.image.mean_to_std_ratio"]
    assert "separability.svm_top2_accuracy" in head
    assert "alpha_sweep.image_shift.argmin_alpha.all" in head
    assert "thin_shell.image.mu_norm" not in head  # numeric, but not a main headline number
    assert len(head) == len(set(head))


def test_summary_table_key_value(tmp_path):
    s = _summary("coco", "B-32", 0.94, 1.03, 1.0, paper=True)
    rows = summary_rows(s)
    assert rows[0] == ("dataset", "coco") and rows[1] == ("model", "B-32")
    out = tmp_path / "summary_table.csv"
    write_summary_table(out, s)
    with open(out, newline="") as fh:
        table = list(csv.reader(fh))
    assert table[0] == ["key", "value"]
    d = dict(table[1:])
    assert float(d["covariance.text.mean_to_std_ratio"]) == 1.03
    assert d["separability.top2_features"] == "[93,134]"
    assert len(table) - 1 == len(flatten_summary(s))


def test_figures_render(tmp_path):
    pytest.importorskip("matplotlib")
    from clipgeom.outputs import save_figure
    from clipgeom.paper import PAPER_VALUES
    from clipgeom.plots import compare as pc

    a = _summary("coco", "B-32", 0.94, 1.03, 1.0)
    b = _summary("coco", "L-14", 1.2, 0.9, 0.98)
    c = _summary("flickr", "B-32", 0.8, 1.1, 1.0)
    columns, rows = comparison_table([a, b, c])
    grid = tmp_path / "grid.png"
    save_figure(pc.headline_grid(rows, headline_keys(columns, rows), paper=PAPER_VALUES), grid)
    heat = tmp_path / "all.png"
    save_figure(pc.all_numbers(rows, numeric_columns(columns, rows)), heat)
    empty = tmp_path / "empty.png"
    save_figure(pc.headline_grid([], []), empty)
    for p in (grid, heat, empty):
        assert p.stat().st_size > 1000
