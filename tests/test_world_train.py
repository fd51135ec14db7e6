"""Synthetic worlds with known concept frequencies, and small CLIPs trained on them.

The frequency laws are checked against their formulas computed here; the training logits and loss against the
numpy equations of clipgeom.loss (an independent implementation); a trained model against chance on held-out
images; a workflow run carries each item's concept and training frequency into embeddings.h5.
"""

from __future__ import annotations

import json
from collections import Counter

import h5py
import numpy as np
import pytest
import torch
import yaml
from workflow_utils import REPO, run_snakemake

from clipgeom import loss as L
from clipgeom import world as W
from clipgeom.train import contrastive_logits, symmetric_ce, train_clip

TINY = str(REPO / "config" / "models" / "tiny-clip.json")


# ----------------------------------------------------------------------------- the world
def test_zipf_law_by_formula_with_seeded_ranks():
    w = {"law": "zipf", "zipf_s": 1.3, "concept_seed": 5}
    freq = W.concept_frequencies(w)
    names = W.concepts(W.spec(w))
    assert len(names) == 32 and names[0] == "red circle" and sum(freq.values()) == pytest.approx(1.0)
    ranks = np.arange(1, 33, dtype=float)
    p = ranks**-1.3 / np.sum(ranks**-1.3)
    order = np.random.default_rng(5).permutation(32)  # rank r goes to names[order[r]]
    for r, i in enumerate(order):
        assert freq[names[i]] == pytest.approx(p[r], rel=1e-12)
    # another concept_seed assigns the ranks to other concepts; the sorted law stays the same
    other = W.concept_frequencies({**w, "concept_seed": 6})
    assert other != freq and sorted(other.values()) == pytest.approx(sorted(freq.values()))


def test_uniform_and_table_laws():
    u = W.concept_frequencies({"law": "uniform", "colours": 3, "shapes": 2})
    assert list(u) == ["red circle", "red square", "green circle", "green square", "blue circle", "blue square"]
    assert set(u.values()) == {1 / 6}
    table = {c: i + 1.0 for i, c in enumerate(u)}
    t = W.concept_frequencies({"law": "table", "colours": 3, "shapes": 2, "table": table})
    assert t["blue square"] == pytest.approx(6 / 21) and t["red circle"] == pytest.approx(1 / 21)
    with pytest.raises(ValueError, match="world.table"):
        W.spec({"law": "table", "colours": 3, "shapes": 2, "table": {"red circle": 1}})
    with pytest.raises(ValueError, match="world.law"):
        W.spec({"law": "pareto"})


def test_training_draws_follow_the_law_and_the_control_is_uniform():
    w = {"law": "zipf", "zipf_s": 1.1, "colours": 4, "shapes": 2}
    freq = W.concept_frequencies(w)
    n = 40_000
    law = Counter(W.sample_concepts(w, n, np.random.default_rng(0)))
    uni = Counter(W.sample_concepts(w, n, np.random.default_rng(0), sampling="uniform"))
    for c, p in freq.items():  # within 5 binomial standard errors
        assert abs(law[c] / n - p) < 5 * np.sqrt(p * (1 - p) / n), c
        assert abs(uni[c] / n - 1 / 8) < 5 * np.sqrt((1 / 8) * (7 / 8) / n), c


def test_world_split_is_balanced_labelled_and_reproducible(tmp_path):
    w = {"law": "zipf", "colours": 4, "shapes": 4, "image_size": 24}
    a = W.make_world_split(tmp_path / "a", w, n_images=40, captions_per_image=2, seed=3)
    W.make_world_split(tmp_path / "b", w, n_images=40, captions_per_image=2, seed=3)
    assert a["images"] == 40 and a["captions"] == 80 and a["concepts"] == 16
    rows = [json.loads(line) for line in (tmp_path / "a" / "captions.jsonl").read_text().splitlines()]
    per_image = {r["image"]: r["concept"] for r in rows}
    counts = Counter(per_image.values())
    assert set(counts.values()) <= {2, 3} and len(counts) == 16  # 40 over 16 concepts: 2 or 3 each
    freq = W.concept_frequencies(w)
    for r in rows:
        colour, shape = r["concept"].split(" ")
        assert colour in r["caption"] and shape in r["caption"]
        assert r["train_frequency"] == freq[r["concept"]]
    for f in sorted((tmp_path / "a" / "images").iterdir()):
        assert f.read_bytes() == (tmp_path / "b" / "images" / f.name).read_bytes()
    assert (tmp_path / "a" / "captions.jsonl").read_text() == (tmp_path / "b" / "captions.jsonl").read_text()


def test_rendered_shape_has_its_colour_on_another_background():
    w = W.spec({"image_size": 32})
    nz = W.nuisance(w, "blue square", np.random.default_rng(0))
    img = np.asarray(W.render(w, "blue square", nz), dtype=float)
    cx, cy = int(nz["x0"] + nz["frac"] * 16), int(nz["y0"] + nz["frac"] * 16)  # centre of the square
    assert np.abs(img[cy, cx] - np.array(W.COLOURS["blue"])).max() <= 13  # pixel noise is ±12
    assert nz["bg"] != "blue"


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("kind", ["cosine", "euclidean", "sq_euclidean"])
def test_training_logits_and_loss_match_the_numpy_equations(kind):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 5)) + 0.3
    s = contrastive_logits(torch, torch.tensor(x), torch.tensor(y), 7.0, kind).numpy()
    ref = L.logits(x, y, 7.0, kind)
    np.testing.assert_allclose(s, ref, rtol=1e-9, atol=1e-9)
    assert float(symmetric_ce(torch, torch.tensor(s))) == pytest.approx(L.clip_loss(ref), rel=1e-12)


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_is_deterministic_for_a_seed_on_cpu():
    kw = dict(steps=4, batch_size=16, n_train=64, n_eval=32, warmup=1)
    a, ra = train_clip("tiny-clip", TINY, {"colours": 3, "shapes": 2}, seed=3, **kw)
    b, _ = train_clip("tiny-clip", TINY, {"colours": 3, "shapes": 2}, seed=3, **kw)
    c, _ = train_clip("tiny-clip", TINY, {"colours": 3, "shapes": 2}, seed=4, **kw)
    sa, sb, sc = _state(a), _state(b), _state(c)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert ra.metrics["steps"] == 4 and len(ra.curve["loss"]) >= 2


def test_fixed_logit_scale_stays_fixed():
    _, r = train_clip(
        "tiny-clip",
        TINY,
        {"colours": 2, "shapes": 2},
        steps=3,
        batch_size=8,
        n_train=32,
        n_eval=8,
        logit_scale=100,
        warmup=1,
    )
    assert r.metrics["final_logit_scale"] == pytest.approx(100.0, rel=1e-5)
    assert all(s == pytest.approx(100.0, rel=1e-5) for s in r.curve["logit_scale"])


@pytest.mark.parametrize("kind", ["cosine", "euclidean", "sq_euclidean"])
def test_a_trained_model_beats_chance_on_held_out_images(kind):
    """8 concepts (chance 1/8), 80 steps of batch 64: the held-out concept accuracy (a balanced set the model
    never saw) is at least twice chance and well above the same initialisation untrained (lr ~ 0)."""
    w = {"law": "zipf", "zipf_s": 1.1, "colours": 4, "shapes": 2}
    kw = dict(batch_size=64, n_train=512, n_eval=128, logits=kind, warmup=10, seed=0)
    _, untrained = train_clip("tiny-clip", TINY, w, steps=1, lr=1e-12, **kw)
    _, r = train_clip("tiny-clip", TINY, w, steps=80, lr=2e-3, **kw)
    chance, acc = r.metrics["chance_accuracy"], r.metrics["heldout_concept_accuracy"]
    assert chance == pytest.approx(1 / 8)
    assert acc >= 2 * chance, acc
    assert acc >= untrained.metrics["heldout_concept_accuracy"] + 0.1, (acc, untrained.metrics)
    assert r.curve["loss"][-1] < r.curve["loss"][0] - 0.3


def test_euclidean_scale_starts_where_the_first_batch_distance_term_is_one():
    _, r = train_clip(
        "tiny-clip",
        TINY,
        {"colours": 2, "shapes": 2},
        steps=1,
        batch_size=16,
        n_train=64,
        n_eval=8,
        logits="sq_euclidean",
        lr=1e-12,
        warmup=1,
    )
    assert 0 < r.curve["logit_scale"][0] < 1  # raw squared distances are large at initialisation


# ----------------------------------------------------------------------------- the workflow
@pytest.mark.slow
def test_a_world_dataset_through_a_trained_model_carries_concepts_and_frequencies(tmp_path):
    cfg = {
        "run_name": "world",
        "worlds": {"w": {"colours": 4, "shapes": 2, "law": "zipf"}},
        "datasets": {"world_eval": {"kind": "world", "world": "w", "n_images": 24, "captions_per_demo_image": 2}},
        "models": {
            "learned": {
                "arch": "tiny-clip",
                "model_config": TINY,
                "pretrained": "results/models/learned.pt",
                "device": "cpu",
                "train": {"world": "w", "steps": 10, "batch_size": 16, "n_train": 64, "n_eval": 16},
            }
        },
        "embedding": {"shards": 1, "threads": 1, "loader_workers": 0},
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_snakemake(tmp_path, path, "--cores", "2", "results/world_eval/learned/embeddings.h5")
    freq = W.concept_frequencies(cfg["worlds"]["w"])
    with h5py.File(tmp_path / "results/world_eval/learned/embeddings.h5") as f:
        for mod in ("image", "text"):
            concepts = [c.decode() for c in f[f"{mod}/concept"][()]]
            assert len(concepts) == len(f[f"{mod}/embedding"])
            np.testing.assert_array_equal(f[f"{mod}/train_frequency"][()], [freq[c] for c in concepts])
        assert f.attrs["pretrained"].endswith("learned.pt")
    metrics = json.loads((tmp_path / "results/models/learned/train_metrics.json").read_text())
    assert metrics["steps"] == 10 and metrics["train_frequencies"] == pytest.approx(freq)
    assert (tmp_path / "results/models/learned/training.png").stat().st_size > 1000
