"""Prediction 1 (paper §6): the concept_frequency stage (clipgeom.frequency, clipgeom.stages.frequency), the
metadata of imported embeddings (clipgeom.imported), and the workflow on the 500 real CLIP pairs.

Planted data with a known relation (a concept's rows lean toward the common direction the more, the more
frequent the concept: its mean conformity rises with frequency, so the concept-level rho is exactly 1), a
control without it (the bootstrap CI holds 0 and the permutation p is not small), the word-frequency proxy on
a hand-counted corpus, the not-applicable path, and the importer's metadata.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.stats import spearmanr
from workflow_utils import REPO, run_snakemake

from clipgeom import frequency as fq
from clipgeom.h5io import Embeddings, EmbeddingsFileError, has_concepts, read_embeddings, write_embeddings
from clipgeom.imported import import_embeddings
from clipgeom.paper import evaluate_claims
from clipgeom.stages.frequency import NOT_APPLICABLE, compute_concept_frequency
from clipgeom.summary import flatten

DEFAULTS = {
    "bootstrap_reps": 1000,
    "permutation_reps": 1000,
    "ci_level": 0.95,
    "seed": 0,
    "min_count": 3,
    "proxy": True,
    "proxy_corpus": None,
    "null_max_rows": 50000,
    "chunk_rows": 64,  # several chunks: the streamed conformity is exercised
    "proxy_bins": 10,
    "max_points": 20000,
}


# ---------------------------------------------------------------------------
# planted data
# ---------------------------------------------------------------------------
def _planted(relation: bool, k: int = 8, per: int = 40, d: int = 24, seed: int = 0, zero_last: bool = False):
    """Rows of k concepts with Zipf training frequencies; with ``relation`` concept c's rows are
    a_c·u + e_c + noise, a_c growing with its frequency (u the common direction, e_c orthonormal), so the
    concept's conformity rises with its frequency; without it every row is drawn alike, whatever its concept."""
    rng = np.random.default_rng(seed)
    freq = 1.0 / np.arange(1, k + 1) ** 1.1
    freq /= freq.sum()
    if zero_last:
        freq[-1] = 0.0
    concepts = np.repeat([f"concept{c}" for c in range(k)], per)
    codes = np.repeat(np.arange(k), per)
    basis = np.eye(d)
    u = basis[0]
    if relation:
        a = 0.3 + 0.25 * (k - 1 - np.arange(k))  # most frequent (c = 0) leans most toward u
        x = a[codes, None] * u + basis[1 + codes] + 0.03 * rng.normal(size=(k * per, d))
    else:
        x = 0.8 * u + 0.5 * rng.normal(size=(k * per, d))
    return x.astype(np.float32), concepts, freq[codes], codes, freq


def _write_concepts_h5(path, image, text, concepts, row_freq, captions=None):
    n = len(image)
    emb = Embeddings(
        image=image,
        text=text,
        image_id=np.arange(n),
        image_file=np.asarray([f"{i}.png" for i in range(n)], dtype=object),
        text_id=np.arange(n),
        text_image_index=np.arange(n),
        caption=np.asarray(captions if captions is not None else [f"a {c}" for c in concepts], dtype=object),
        attrs={"model": "planted"},
        image_concept=concepts,
        image_train_frequency=row_freq,
        text_concept=concepts,
        text_train_frequency=row_freq,
    )
    write_embeddings(path, emb)
    return path


def _brute_conformity(x: np.ndarray) -> np.ndarray:
    """Eq. 10 by brute force: the mean cosine to every other row."""
    u = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    g = u @ u.T
    return (g.sum(1) - np.diag(g)) / (len(u) - 1)


def _brute_cos_to_mean(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.mean(0)
    return (x @ m) / (np.linalg.norm(x, axis=1) * np.linalg.norm(m))


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    x, concepts, row_freq, codes, freq = _planted(True)
    y, *_ = _planted(True, seed=1)
    path = _write_concepts_h5(tmp_path_factory.mktemp("planted") / "embeddings.h5", x, y, concepts, row_freq)
    return path, x, y, concepts, row_freq, freq


def test_planted_relation_gives_concept_rho_one_and_scipy_sample_rho(planted):
    path, x, y, concepts, row_freq, freq = planted
    res = compute_concept_frequency(path, DEFAULTS)
    s = res.summary
    assert s["source"] == "training" and s["applicable"] and s["n_concepts"] == 8
    for mod, rows in (("image", x), ("text", y)):
        block = s[mod]
        # the plant: concept mean conformity strictly increasing in frequency -> concept-level rho exactly 1
        conf = _brute_conformity(rows)
        means = np.array([conf[concepts == f"concept{c}"].mean() for c in range(8)])
        assert np.all(np.diff(means[np.argsort(freq)]) > 0)
        assert block["concept_level"]["rho_conformity"] == 1.0
        assert block["concept_level"]["rho_cosine_to_mean"] == 1.0
        assert block["concept_level"]["n_concepts"] == 8
        # sample level: scipy on independently computed conformity and cos(m, v)
        assert block["rho_conformity"] == pytest.approx(spearmanr(row_freq, conf).statistic, abs=1e-12)
        cosm = _brute_cos_to_mean(rows)
        assert block["rho_cosine_to_mean"] == pytest.approx(spearmanr(row_freq, cosm).statistic, abs=1e-12)
        assert block["rho_conformity"] > 0.8 and block["n"] == len(rows)
        lo, hi = block["rho_conformity_ci"]
        assert 0 < lo <= block["rho_conformity"] <= hi
        # 8! permutations: only the identity order gives rho this high
        assert block["p_permutation"] == pytest.approx(1 / 1001)
        assert abs(block["null_rho_conformity"]) < 0.1
    rows = {
        r["claim"]: r
        for r in evaluate_claims(
            flatten({"concept_frequency": s}), paper_setup=False, normalized=False, setup="planted"
        )
    }
    assert rows["prediction_1"]["status"] == "holds"
    assert rows["prediction_1_proxy"]["status"] == "not applicable"
    # the per-concept table: one row per modality x concept, means equal to the brute-force ones
    assert len(res.concepts["concept"]) == 16
    img = [i for i, m in enumerate(res.concepts["modality"]) if m == "image"]
    got = {res.concepts["concept"][i]: res.concepts["mean_conformity"][i] for i in img}
    conf = _brute_conformity(x)
    for c in range(8):
        assert got[f"concept{c}"] == pytest.approx(conf[concepts == f"concept{c}"].mean(), abs=1e-9)


def test_control_without_relation_ci_holds_zero_and_p_is_not_small(tmp_path):
    x, concepts, row_freq, _, _ = _planted(False, seed=102)
    y, *_ = _planted(False, seed=103)
    path = _write_concepts_h5(tmp_path / "control.h5", x, y, concepts, row_freq)
    s = compute_concept_frequency(path, DEFAULTS).summary
    for mod in ("image", "text"):
        block = s[mod]
        lo, hi = block["rho_conformity_ci"]
        assert lo < 0 < hi, (mod, block)
        assert block["p_permutation"] > 0.05, (mod, block)
        clo, chi = block["concept_level"]["rho_conformity_ci"]
        assert clo < 0 < chi, (mod, block["concept_level"])
    rows = {
        r["claim"]: r
        for r in evaluate_claims(
            flatten({"concept_frequency": s}), paper_setup=False, normalized=False, setup="control"
        )
    }
    assert rows["prediction_1"]["status"] == "fails"


# ---------------------------------------------------------------------------
# the statistics against scipy, draw for draw
# ---------------------------------------------------------------------------
def test_bootstrap_ci_is_the_percentile_of_scipy_rho_on_the_same_draws():
    rng = np.random.default_rng(5)
    x = np.round(rng.normal(size=60), 1)  # ties
    y = 0.5 * x + rng.normal(size=60)
    got = fq.bootstrap_spearman_ci(x, y, reps=200, seed=9, level=0.9)
    draws = np.random.default_rng(9).integers(0, 60, size=(200, 60))
    rhos = np.array([spearmanr(x[i], y[i]).statistic for i in draws])
    assert got["n_valid"] == 200
    np.testing.assert_allclose(got["ci"], np.quantile(rhos, [0.05, 0.95]), atol=1e-12)
    assert fq.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-15)
    assert math.isnan(fq.spearman(np.ones(5), np.arange(5.0)))


def test_permutation_null_is_scipy_rho_under_permuted_concept_frequencies():
    rng = np.random.default_rng(6)
    k, n = 9, 300
    codes = rng.integers(0, k, n)
    cf = np.round(rng.random(k), 1)  # ties between concepts
    values = rng.normal(size=n) + 0.4 * cf[codes]
    stats = fq.concept_stats(codes, cf[codes], values)
    got = fq.permutation_spearman(stats["codes"], stats["frequency"], values, stats["mean"], reps=50, seed=4)
    perms = np.random.default_rng(4).permuted(np.broadcast_to(np.arange(len(stats["frequency"])), (50, 9)), axis=1)
    f = stats["frequency"]
    null_s = np.array([spearmanr(f[p][stats["codes"]], values).statistic for p in perms])
    null_c = np.array([spearmanr(f[p], stats["mean"]).statistic for p in perms])
    rho_s = spearmanr(f[stats["codes"]], values).statistic
    assert got["sample"]["rho"] == pytest.approx(rho_s, abs=1e-12)
    assert got["sample"]["null_mean"] == pytest.approx(null_s.mean(), abs=1e-12)
    assert got["sample"]["p"] == pytest.approx((1 + np.sum(null_s >= rho_s - 1e-12)) / 51)
    assert got["concept"]["null_mean"] == pytest.approx(null_c.mean(), abs=1e-12)


# ---------------------------------------------------------------------------
# the word-frequency proxy
# ---------------------------------------------------------------------------
def test_proxy_on_a_hand_counted_corpus():
    corpus = ["A red dog.", "a red cat", "The blue dog runs"]
    counts = fq.word_counts(corpus)
    assert dict(counts) == {"red": 2, "dog": 2, "cat": 1, "blue": 1, "runs": 1}  # T = 7 tokens, V = 5 words
    table, unseen = fq.word_log_frequency(counts)
    assert table["red"] == pytest.approx(math.log(3 / 13)) and unseen == pytest.approx(math.log(1 / 13))
    caps = ["Red dog!", "green cat", "the of a", "blue, blue runs"]
    got = fq.caption_log_frequency(caps, counts)
    assert got[0] == pytest.approx(math.log(3 / 13))
    assert got[1] == pytest.approx((math.log(1 / 13) + math.log(2 / 13)) / 2)  # "green" is not in the corpus
    assert math.isnan(got[2])  # stop words only
    assert got[3] == pytest.approx(math.log(2 / 13))
    img = fq.image_log_frequency(got, [0, 0, 1, -1], 3)
    assert img[0] == pytest.approx((got[0] + got[1]) / 2)
    assert math.isnan(img[1]) and math.isnan(img[2])  # only a caption without words; no caption
    assert fq.content_words("Don't stop: 2 dogs!") == ["don", "stop", "dogs"]


def test_proxy_stage_on_the_real_pairs_states_it_is_a_proxy(clip500, shared_data, tmp_path):
    recs = json.loads((shared_data / "clip-vitb16-coco500" / "pairs_reconstructed.json").read_text())
    emb = Embeddings(**{**clip500.__dict__, "caption": np.asarray([r["caption"] for r in recs], dtype=object)})
    path = tmp_path / "e.h5"
    write_embeddings(path, emb)
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"annotations": [{"caption": r["caption"]} for r in recs]}))
    res = compute_concept_frequency(path, DEFAULTS, str(corpus))
    s = res.summary
    assert s["source"] == "proxy: word frequency in corpus.json, not in the model's training data"
    assert s["n_concepts"] is None and s["text"]["concept_level"]["rho_conformity"] is None
    counts = fq.word_counts([r["caption"] for r in recs])
    lf = fq.caption_log_frequency([r["caption"] for r in recs], counts)
    conf = _brute_conformity(clip500.text)
    assert s["text"]["rho_conformity"] == pytest.approx(spearmanr(lf, conf).statistic, abs=1e-12)
    own = compute_concept_frequency(path, DEFAULTS)  # no corpus: the dataset's own captions, the same words here
    assert (
        own.summary["source"] == "proxy: word frequency in the dataset's own captions, not in the model's training data"
    )
    assert own.summary["text"]["rho_conformity"] == pytest.approx(s["text"]["rho_conformity"], abs=1e-12)


# ---------------------------------------------------------------------------
# not applicable, and the script end to end
# ---------------------------------------------------------------------------
def _run_script(h5, out, params, corpus=None):
    names = {
        "metrics": "metrics.json",
        "concepts": "concepts.csv",
        "samples": "samples.csv",
        "figure_png": "f.png",
        "figure_pdf": "f.pdf",
    }
    out.mkdir(parents=True, exist_ok=True)
    inputs = [f"embeddings={h5}"] + ([f"corpus={corpus}"] if corpus else [])
    cmd = [
        sys.executable,
        str(REPO / "workflow" / "scripts" / "concept_frequency.py"),
        "--input",
        *inputs,
        "--output",
        *[f"{k}={out / v}" for k, v in names.items()],
        "--params",
        json.dumps(params),
        "--wildcards",
        "dataset=planted",
        "model=m",
        "--log",
        str(out / "log.txt"),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=out)
    assert res.returncode == 0, res.stderr[-4000:]
    for name in names.values():
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    return json.loads((out / "metrics.json").read_text()), out


def test_not_applicable_without_frequencies_or_captions(write_h5, tmp_path):
    rng = np.random.default_rng(2)
    path = write_h5(rng.normal(size=(30, 8)) + 2, rng.normal(size=(30, 8)) - 2)
    with __import__("h5py").File(path, "a") as f:  # no caption text at all
        del f["text/caption"]
        f["text"].create_dataset(
            "caption", data=np.asarray([""] * 30, dtype=object), dtype=__import__("h5py").string_dtype()
        )
    m, out = _run_script(path, tmp_path / "na", {"p": {}, "demo": False})
    s = m["summary"]
    assert s["source"] == NOT_APPLICABLE and s["applicable"] is False
    for mod in ("image", "text"):
        assert s[mod]["rho_conformity"] is None and s[mod]["rho_conformity_ci"] == [None, None]
        assert s[mod]["p_permutation"] is None and s[mod]["concept_level"]["rho_conformity"] is None
    assert (out / "samples.csv").read_text().splitlines() == [
        "modality,row,id,label,concept,frequency,log_frequency,conformity,cos_to_mean"
    ]
    rows = {
        r["claim"]: r["status"]
        for r in evaluate_claims(flatten({"concept_frequency": s}), paper_setup=False, normalized=False, setup="x")
    }
    assert rows["prediction_1"] == rows["prediction_1_proxy"] == "not applicable"


def test_constant_proxy_leaves_values_null(clip500_h5, tmp_path):
    """ "caption 0", "caption 1", ...: every caption has the same content word, so no ranking: nulls."""
    m, _ = _run_script(clip500_h5, tmp_path / "const", {"p": {"bootstrap_reps": 50}, "demo": False})
    s = m["summary"]
    assert s["source"].startswith("proxy: word frequency in the dataset's own captions")
    assert s["text"]["rho_conformity"] is None and s["image"]["n"] is None
    assert m["modalities"]["text"]["not_computed"] == "every row has the same frequency"


def test_script_writes_concept_table_and_samples_with_a_zero_frequency_concept(tmp_path):
    x, concepts, row_freq, _, freq = _planted(True, zero_last=True, per=12)
    y, *_ = _planted(True, seed=3, zero_last=True, per=12)
    h5 = _write_concepts_h5(tmp_path / "z.h5", x, y, concepts, row_freq)
    params = {"p": {"bootstrap_reps": 200, "permutation_reps": 200, "min_count": 13}, "demo": False}
    m, out = _run_script(h5, tmp_path / "z", params)
    assert m["summary"]["image"]["concept_level"]["n_concepts"] == 0  # every concept has 12 < 13 rows
    assert m["summary"]["image"]["concept_level"]["rho_conformity"] is None
    assert m["summary"]["image"]["rho_conformity"] > 0.8  # the sample level uses every row
    params["p"]["min_count"] = 3
    m, out = _run_script(h5, tmp_path / "z3", params)
    assert m["summary"]["image"]["concept_level"]["rho_conformity"] == 1.0
    with open(out / "concepts.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert len(table) == 16 and {r["used"] for r in table} == {"True"}
    zero = [r for r in table if float(r["frequency"]) == 0.0]
    assert len(zero) == 2 and all(r["log_frequency"] == "-inf" for r in zero)
    with open(out / "samples.csv", newline="") as fh:
        assert sum(1 for _ in csv.DictReader(fh)) == 2 * len(x)
    assert "min_count" in m["params"] and m["method"]["bootstrap"] == fq.BOOTSTRAP_ESTIMATOR


# ---------------------------------------------------------------------------
# the importer's metadata
# ---------------------------------------------------------------------------
@pytest.fixture
def pairs_npy(tmp_path):
    rng = np.random.default_rng(7)
    arr = rng.normal(size=(2, 6, 8)).astype(np.float32)
    path = tmp_path / "pairs.npy"
    np.save(path, arr)
    return path


def test_metadata_fills_captions_ids_and_files(pairs_npy, tmp_path):
    recs = [
        {"index": i, "image_id": 100 + i, "file_name": f"{100 + i:012d}.jpg", "caption": f"a cat number {i}"}
        for i in range(6)
    ]
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps(recs))
    emb = import_embeddings(pairs_npy, dataset="d", model="m", logit_scale=100.0, metadata=meta)
    out = tmp_path / "e.h5"
    write_embeddings(out, emb)
    back = read_embeddings(out)
    assert list(back.caption) == [r["caption"] for r in recs]
    assert list(back.image_id) == [100 + i for i in range(6)]
    assert list(back.image_file) == [r["file_name"] for r in recs]
    assert not has_concepts(back) and back.attrs["metadata_file"] == str(meta)


def test_metadata_with_a_wrong_count_is_an_error_naming_the_file(pairs_npy, tmp_path):
    meta = tmp_path / "short_meta.json"
    meta.write_text(json.dumps([{"caption": "x"}] * 5))
    with pytest.raises(
        EmbeddingsFileError, match=r"short_meta\.json: metadata has 5 records but the embeddings have 6"
    ):
        import_embeddings(pairs_npy, dataset="d", model="m", logit_scale=100.0, metadata=meta)
    meta.write_text(json.dumps([{"caption": "x", "image_id": 1}] + [{"caption": "y"}] * 5))
    with pytest.raises(EmbeddingsFileError, match=r"short_meta\.json: metadata record 1 lacks 'image_id'"):
        import_embeddings(pairs_npy, dataset="d", model="m", logit_scale=100.0, metadata=meta)


def test_metadata_concepts_survive_the_skip_policy(tmp_path):
    rng = np.random.default_rng(8)
    arr = rng.normal(size=(2, 5, 8)).astype(np.float32)
    arr[0, 2] = 0.0  # a zero-norm image row: dropped with its caption under skip
    np.save(tmp_path / "p.npy", arr)
    recs = [{"caption": f"c{i}", "concept": f"k{i % 2}", "train_frequency": 0.1 * (1 + i % 2)} for i in range(5)]
    (tmp_path / "m.json").write_text(json.dumps(recs))
    emb = import_embeddings(
        tmp_path / "p.npy", dataset="d", model="m", logit_scale=100.0, policy="skip", metadata=tmp_path / "m.json"
    )
    assert has_concepts(emb) and list(emb.caption) == ["c0", "c1", "c3", "c4"]
    assert list(emb.text_concept) == list(emb.image_concept) == ["k0", "k1", "k1", "k0"]
    np.testing.assert_allclose(emb.image_train_frequency, [0.1, 0.2, 0.2, 0.1])


# ---------------------------------------------------------------------------
# the workflow: 500 real CLIP pairs, their captions as metadata, the COCO val2017 captions as the corpus
# ---------------------------------------------------------------------------
@pytest.mark.slow
def test_workflow_on_the_real_pairs_reports_the_proxy(shared_data, tmp_path):
    pairs = shared_data / "clip-vitb16-coco500"
    cfg = tmp_path / "coco500.yaml"
    cfg.write_text(
        json.dumps(
            {
                "run_name": "coco500-proxy",
                "datasets": {
                    "coco500": {
                        "kind": "embeddings",
                        "path": str(pairs / "features_clip.npy"),
                        "metadata": str(pairs / "pairs_reconstructed.json"),
                        "model": "vitb16",
                    }
                },
                "stages": {
                    "concept_frequency": {"proxy_corpus": str(shared_data / "coco-val2017" / "captions_val2017.json")}
                },
            }
        )
    )
    run_snakemake(tmp_path, cfg, "--cores", "2", "results/coco500/vitb16/summary.json")
    out = tmp_path / "results" / "coco500" / "vitb16"
    for name in ("metrics.json", "concepts.csv", "samples.csv", "concept_frequency.png", "concept_frequency.pdf"):
        assert (out / "concept_frequency" / name).is_file(), name
    emb = read_embeddings(out / "embeddings.h5")
    recs = json.loads((pairs / "pairs_reconstructed.json").read_text())
    assert list(emb.caption) == [r["caption"] for r in recs] and emb.image_id[0] == recs[0]["image_id"]
    summary = json.loads((out / "summary.json").read_text())
    cf = summary["concept_frequency"]
    assert cf["source"] == "proxy: word frequency in captions_val2017.json, not in the model's training data"
    for mod in ("image", "text"):
        assert -1 <= cf[mod]["rho_conformity"] <= 1 and cf[mod]["n"] == 500
        lo, hi = cf[mod]["rho_conformity_ci"]
        assert lo <= cf[mod]["rho_conformity"] <= hi and 0 < cf[mod]["p_permutation"] <= 1
    assert summary["claims"]["prediction_1"] == "not applicable"
    assert summary["claims"]["prediction_1_proxy"] in ("holds", "fails")
