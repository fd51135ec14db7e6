"""Experiment arms pooled over seeds (clipgeom.arms): the t-interval against scipy's, and the rows on
hand-made summaries (each arm read in the geometry it was trained with)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from clipgeom.arms import arm_columns, arm_rows, t_interval


def test_t_interval_is_scipys_for_the_mean():
    x = [0.12, -0.05, 0.31, 0.2]
    m, lo, hi, n = t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert (m, lo, hi, n) == pytest.approx((np.mean(x), ref[0], ref[1], 4), rel=1e-12)
    assert t_interval([1.0, float("nan"), None])[3] == 1 and math.isnan(t_interval([1.0])[1])
    assert all(math.isnan(v) for v in t_interval([])[:3])


def _summary(model, rho, acc_cos, acc_euc):
    return {
        "dataset": "w",
        "model": model,
        "provenance": {"logit_scale": 14.0},
        "concept_frequency": {"image": {"rho_conformity": rho}},
        "alpha_sweep": {
            "image_shift": {"accuracy_at_zero": acc_cos},
            "euclidean": {"image_shift": {"accuracy_at_zero": acc_euc}},
        },
    }


def test_arm_rows_pool_seeds_in_the_arms_own_geometry():
    summaries = [
        _summary("c0", 0.1, 0.5, 0.0),
        _summary("c1", 0.3, 0.7, 0.0),
        _summary("e0", -0.2, 0.0, 0.4),
        _summary("e1", -0.4, 0.0, 0.6),
        _summary("loner", 9.0, 9.0, 9.0),  # no arm: left out
    ]
    arms = {
        "c0": {"arm": "cos/zipf", "logits": "cosine"},
        "c1": {"arm": "cos/zipf", "logits": "cosine"},
        "e0": {"arm": "euc/zipf", "logits": "euclidean"},
        "e1": {"arm": "euc/zipf", "logits": "euclidean"},
    }
    rows = {r["arm"]: r for r in arm_rows(summaries, arms)}
    assert set(rows) == {"cos/zipf", "euc/zipf"}
    assert rows["cos/zipf"]["i2t_accuracy"] == pytest.approx(0.6)  # cosine sweep
    assert rows["euc/zipf"]["i2t_accuracy"] == pytest.approx(0.5)  # Euclidean sweep, not the cosine one
    assert rows["euc/zipf"]["rho_image"] == pytest.approx(-0.3)
    lo, hi = stats.t.interval(0.95, 1, loc=-0.3, scale=stats.sem([-0.2, -0.4]))
    assert (rows["euc/zipf"]["rho_image_ci_low"], rows["euc/zipf"]["rho_image_ci_high"]) == pytest.approx((lo, hi))
    assert rows["cos/zipf"]["models"] == "c0 c1" and rows["cos/zipf"]["n_models"] == 2
    assert math.isnan(rows["cos/zipf"]["rho_text"])  # absent in every summary
    assert set(arm_columns()) >= set(rows["cos/zipf"])


def test_arms_markdown_cells():
    from clipgeom.arms import arms_markdown

    rows = [{"arm": "a", "n_models": 3, "x": 0.123, "x_ci_low": 0.1, "x_ci_high": 0.15, "y": float("nan")}]
    md = arms_markdown(rows, ["x", "y"])
    assert md.splitlines()[2] == "| a | 3 | 0.12 [0.10, 0.15] | — |"
