"""Stage concept_frequency (paper §6, Prediction 1): is conformity higher for frequent concepts?

:func:`compute_concept_frequency` reads one embeddings.h5 and decides where the frequencies come from:

* ``training`` — the file carries a concept and its training-set frequency per row (``/image/concept``,
  ``/image/train_frequency``, the same under ``/text``; a synthetic world embedded by a model trained here,
  :mod:`clipgeom.world`). This is Prediction 1 itself.
* ``proxy: word frequency in <corpus>, not in the model's training data`` — no training frequencies, but
  captions: each caption's mean log word frequency in a caption corpus (``proxy_corpus``, a COCO-format
  captions JSON, or by default the dataset's own captions), each image the mean over its captions
  (:mod:`clipgeom.frequency`). A stand-in only.
* ``not applicable: ...`` — neither: the summary's numbers are null and the stage still completes.

Conformity is Eq. 10 within the modality's set and cos(m, v) uses the raw modality mean m
(:func:`clipgeom.conformity.conformity_and_cosine`, two streamed passes). The statistics (Spearman ρ, the
bootstrap CI, the permutation null) are :mod:`clipgeom.frequency`'s. Returns a :class:`FrequencyResult`:
metrics.json's summary and details, the per-concept and per-sample CSV columns and the figure's arrays.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from clipgeom import conformity as cf
from clipgeom import frequency as fq
from clipgeom.h5io import MODALITIES, has_concepts, iter_embedding_chunks, read_embeddings

_LOG = logging.getLogger("clipgeom.frequency")

NOT_APPLICABLE = "not applicable: no frequencies and no caption text"
TRAINING = "training"
MEASURES = (("conformity", "conformity"), ("cosine_to_mean", "cos_to_mean"))


@dataclass
class FrequencyResult:
    """What the stage computed: ``summary``/``details`` (metrics.json), ``concepts`` and ``samples`` (CSV
    columns), ``plot`` (the figure's arrays, per modality) and ``source``."""

    summary: dict
    details: dict
    concepts: dict
    samples: dict
    plot: dict = field(default_factory=dict)
    source: str = NOT_APPLICABLE


# ---------------------------------------------------------------------------
# the caption corpus of the proxy
# ---------------------------------------------------------------------------
def load_caption_corpus(path: str | Path) -> list[str]:
    """The captions of a corpus file: COCO format (``{"annotations": [{"caption": ...}, ...]}``), or a JSON
    list of records with a ``caption`` (such as ``pairs_reconstructed.json``) or of strings. A file that
    is none of these, or holds no caption, raises ``ValueError`` naming it."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"proxy corpus not found: {path} (stages.concept_frequency.proxy_corpus)") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: the proxy corpus is not readable JSON ({type(e).__name__}: {e})") from e
    items = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected COCO captions ({{'annotations': [...]}}) or a JSON list of captions")
    out = []
    for i, item in enumerate(items):
        text = item.get("caption") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise ValueError(f"{path}: entry {i} has no caption text ({str(item)[:80]!r})")
        out.append(text)
    if not out:
        raise ValueError(f"{path}: the proxy corpus holds no captions")
    return out


# ---------------------------------------------------------------------------
# where the frequencies come from
# ---------------------------------------------------------------------------
def _frequencies(meta, p: dict, corpus: str | None, log) -> tuple[str, dict, dict]:
    """(source, {modality: {"frequency", "log_frequency", "concept"}}, details) for the file's rows."""
    n = {"image": len(meta.image_id), "text": len(meta.text_id)}
    if has_concepts(meta):
        out = {}
        for mod in MODALITIES:
            f = np.asarray(getattr(meta, f"{mod}_train_frequency"), dtype=np.float64)
            with np.errstate(divide="ignore"):
                out[mod] = {
                    "frequency": f,
                    "log_frequency": np.log(f),
                    "concept": np.asarray([str(c) for c in getattr(meta, f"{mod}_concept")], dtype=object),
                }
        log.info("training frequencies from the embeddings file (/image and /text concept, train_frequency)")
        return TRAINING, out, {"frequency": "each row's concept's frequency in the model's training set"}
    captions = [str(c) for c in meta.caption]
    has_text = any(c.strip() for c in captions)
    if not p["proxy"] or not has_text:
        why = (
            "not applicable: no training frequencies, and the proxy is switched off (stages.concept_frequency.proxy)"
            if has_text
            else NOT_APPLICABLE
        )
        log.info("%s: the stage reports null values", why)
        return why, {}, {"frequency": why}
    if corpus:
        texts = load_caption_corpus(corpus)
        name = Path(corpus).name
        corpus_note = f"{corpus} ({len(texts)} captions)"
    else:
        texts = captions
        name = "the dataset's own captions"
        corpus_note = f"the dataset's own captions (/text/caption, {len(texts)} captions)"
    counts = fq.word_counts(texts)
    text_lf = fq.caption_log_frequency(captions, counts)
    image_lf = fq.image_log_frequency(text_lf, meta.text_image_index, n["image"])
    source = f"proxy: word frequency in {name}, not in the model's training data"
    log.info(
        "%s: %d content words (%d tokens) counted in %s; %d of %d captions and %d of %d images have a proxy",
        source,
        len(counts),
        sum(counts.values()),
        corpus_note,
        int(np.isfinite(text_lf).sum()),
        n["text"],
        int(np.isfinite(image_lf).sum()),
        n["image"],
    )
    out = {
        mod: {"frequency": np.exp(lf), "log_frequency": lf, "concept": None}
        for mod, lf in (("image", image_lf), ("text", text_lf))
    }
    details = {
        "frequency": fq.PROXY_ESTIMATOR,
        "corpus": corpus_note,
        "corpus_words": len(counts),
        "corpus_tokens": int(sum(counts.values())),
        "stop_words": len(fq.STOP_WORDS),
    }
    return source, out, details


# ---------------------------------------------------------------------------
# the statistics of one modality
# ---------------------------------------------------------------------------
def _empty_level(concepts: bool) -> dict:
    out = {}
    for key, _ in MEASURES:
        out[f"rho_{key}"] = None
        out[f"rho_{key}_ci"] = [None, None]
        out["p_permutation" if key == "conformity" else f"p_permutation_{key}"] = None
    if concepts:
        out["n_concepts"] = None
    return out


def empty_modality() -> dict:
    """A modality's summary block with every value null (the stage or the modality not applicable)."""
    out = _empty_level(False)
    out["null_rho_conformity"] = None
    out["n"] = None
    out["n_concepts"] = None
    out["concept_level"] = _empty_level(True)
    return out


def _num(x):
    return None if x is None or not math.isfinite(float(x)) else float(x)


def _ci(res: dict) -> list:
    return [_num(v) for v in res["ci"]]


def _test(freq, values, codes, concept_freq, p: dict, seed_offset: int) -> dict:
    """ρ, its bootstrap CI (resampling the units given) and the permutation null across concepts."""
    seed = int(p["seed"]) + seed_offset
    boot = fq.bootstrap_spearman_ci(freq, values, int(p["bootstrap_reps"]), seed, float(p["ci_level"]))
    perm = fq.permutation_spearman(codes, concept_freq, values, reps=int(p["permutation_reps"]), seed=seed)["sample"]
    return {"rho": perm["rho"], "boot": boot, "perm": perm}


def _modality(mod, path, fr: dict, training: bool, p: dict, log) -> tuple[dict, dict, dict, dict, dict]:
    """(summary block, details, concept columns, sample columns, plot arrays) of one modality."""
    n_rows = len(fr["log_frequency"])
    src = lambda: iter_embedding_chunks(path, mod, int(p["chunk_rows"]))  # noqa: E731
    conf, cos_m, _ = cf.conformity_and_cosine(src)
    values = {"conformity": conf, "cosine_to_mean": cos_m}
    samples = {
        "frequency": fr["frequency"],
        "log_frequency": fr["log_frequency"],
        "concept": fr["concept"] if fr["concept"] is not None else np.asarray([""] * n_rows, dtype=object),
        "conformity": conf,
        "cos_to_mean": cos_m,
    }
    ok = np.isfinite(fr["frequency"])
    if not ok.all():
        log.warning("%s: %d of %d rows have no frequency (no content word) and are left out", mod, (~ok).sum(), n_rows)
    idx = np.flatnonzero(ok)
    summary = empty_modality()
    details = {"n_rows": n_rows, "n_with_frequency": int(idx.size)}
    freq = fr["frequency"][idx]
    if training:
        table = fq.concept_stats(fr["concept"][idx], freq, conf[idx])
        codes, concept_freq = table["codes"], table["frequency"]
    else:  # each row its own unit: the permutation runs over rows
        codes, concept_freq, table = np.arange(idx.size), freq, None
    if idx.size < 3 or np.all(freq == freq[0]) or (training and len(concept_freq) < 2):
        why = "fewer than 3 rows with a frequency" if idx.size < 3 else "every row has the same frequency"
        log.warning("%s: %s: no ranking to correlate; values null", mod, why)
        details["not_computed"] = why
        return summary, details, {}, samples, {"reason": why}

    # sample level: every row (the bootstrap and the null on a seeded subsample when there are more than null_max_rows)
    sub = np.arange(idx.size)
    if idx.size > int(p["null_max_rows"]):
        rng = np.random.default_rng(int(p["seed"]))
        sub = np.sort(rng.choice(idx.size, int(p["null_max_rows"]), replace=False))
        log.info("%s: bootstrap and permutation null on a seeded subsample of %d of %d rows", mod, sub.size, idx.size)
        details["null_subsample_rows"] = int(sub.size)
    sample = {}
    for i, (key, _) in enumerate(MEASURES):
        v = values[key][idx]
        rho = fq.spearman(freq, v)
        t = _test(freq[sub], v[sub], codes[sub], concept_freq, p, i)
        sample[key] = (rho, t)
        summary[f"rho_{key}"] = _num(rho)
        summary[f"rho_{key}_ci"] = _ci(t["boot"])
        summary["p_permutation" if key == "conformity" else f"p_permutation_{key}"] = _num(t["perm"]["p"])
        if key == "conformity":
            summary["null_rho_conformity"] = _num(t["perm"]["null_mean"])
        details[f"sample_{key}"] = {
            "rho": _num(rho),
            "bootstrap": {"ci": _ci(t["boot"]), "reps": t["boot"]["reps"], "valid": t["boot"]["n_valid"]},
            "permutation": {k: _num(x) if k != "reps" else x for k, x in t["perm"].items()},
        }
    summary["n"] = int(idx.size)
    log.info(
        "%s: N=%d  rho(freq, C)=%.4f CI [%s, %s]  p_perm=%s  rho(freq, cos(m,v))=%.4f",
        mod,
        idx.size,
        sample["conformity"][0],
        *(f"{c:.4f}" if c is not None else "nan" for c in summary["rho_conformity_ci"]),
        summary["p_permutation"],
        sample["cosine_to_mean"][0],
    )
    plot = {"training": training, "rho": summary["rho_conformity"], "ci": summary["rho_conformity_ci"]}
    plot["p"] = summary["p_permutation"]
    concepts = {}
    if training:
        k = len(table["concept"])
        used = table["count"] >= int(p["min_count"])
        summary["n_concepts"] = int(k)
        cos_table = fq.concept_stats(fr["concept"][idx], freq, cos_m[idx])
        level = _empty_level(True)
        level["n_concepts"] = int(used.sum())
        if (~used).any():
            log.info(
                "%s: %d concept(s) with fewer than min_count=%d rows left out of the concept level: %s",
                mod,
                (~used).sum(),
                p["min_count"],
                list(table["concept"][~used][:10]),
            )
        cfreq = table["frequency"][used]
        for i, (key, _) in enumerate(MEASURES):
            means = (table if key == "conformity" else cos_table)["mean"][used]
            if used.sum() >= 3 and not np.all(cfreq == cfreq[0]):
                t = _test(cfreq, means, np.arange(used.sum()), cfreq, p, 10 + i)
                level[f"rho_{key}"] = _num(t["rho"])
                level[f"rho_{key}_ci"] = _ci(t["boot"])
                level["p_permutation" if key == "conformity" else f"p_permutation_{key}"] = _num(t["perm"]["p"])
        summary["concept_level"] = level
        with np.errstate(divide="ignore"):
            concepts = {
                "concept": table["concept"],
                "frequency": table["frequency"],
                "log_frequency": np.log(table["frequency"]),
                "n": table["count"],
                "used": used,
                "mean_conformity": table["mean"],
                "std_conformity": table["std"],
                "mean_cos_to_mean": cos_table["mean"],
                "std_cos_to_mean": cos_table["std"],
            }
        plot.update(
            frequency=table["frequency"][used],
            mean=table["mean"][used],
            spread=table["std"][used],
            concept_rho=level["rho_conformity"],
            concept_ci=level["rho_conformity_ci"],
            n_concepts=int(used.sum()),
        )
    else:
        plot.update(log_frequency=fr["log_frequency"][idx], conformity=conf[idx])
    return summary, details, concepts, samples, plot


# ---------------------------------------------------------------------------
# the stage
# ---------------------------------------------------------------------------
def compute_concept_frequency(
    path: str | Path, p: dict, corpus: str | None = None, log: logging.Logger | None = None
) -> FrequencyResult:
    """Prediction 1 on one embeddings.h5 (see the module docstring); ``corpus``: the proxy's caption corpus
    (``p["proxy_corpus"]`` as the rule resolved it; None: the dataset's own captions)."""
    log = log or _LOG
    meta = read_embeddings(path, modalities=())  # ids, captions, concepts and frequencies only
    source, freqs, freq_details = _frequencies(meta, p, corpus, log)
    training = source == TRAINING
    summary = {"source": source, "applicable": bool(freqs), "n_concepts": None}
    details = {
        "method": {
            "conformity": "C(v_j) = v̂_j·(Σ_k v̂_k − v̂_j)/(N−1) within the modality's set (Eq. 10); "
            "cos(m, v_j) with m the raw modality mean",
            "rho": "Spearman's rho (scipy.stats.spearmanr) of the frequency with C and with cos(m, v); sample level: "
            "every row; concept level: each concept's mean over its rows vs its frequency (concepts with >= "
            "min_count rows)",
            "bootstrap": fq.BOOTSTRAP_ESTIMATOR,
            "permutation": fq.PERMUTATION_ESTIMATOR
            + ("" if training else "; under the proxy every row is its own unit (a permutation over rows)"),
            **freq_details,
        },
        "modalities": {},
    }
    concept_cols = {
        k: []
        for k in (
            "modality",
            "concept",
            "frequency",
            "log_frequency",
            "n",
            "used",
            "mean_conformity",
            "std_conformity",
            "mean_cos_to_mean",
            "std_cos_to_mean",
        )
    }
    sample_cols = {
        k: []
        for k in (
            "modality",
            "row",
            "id",
            "label",
            "concept",
            "frequency",
            "log_frequency",
            "conformity",
            "cos_to_mean",
        )
    }
    plot = {}
    labels = {"image": (meta.image_id, meta.image_file), "text": (meta.text_id, meta.caption)}
    all_concepts = set()
    for mod in MODALITIES:
        n = len(labels[mod][0])
        if not freqs or n < 2:
            summary[mod] = empty_modality()
            why = source if not freqs else f"{n} row(s): conformity needs at least 2"
            details["modalities"][mod] = {"n_rows": n, "not_computed": why}
            plot[mod] = {"reason": why}
            continue
        block, det, concepts, samples, plot[mod] = _modality(mod, path, freqs[mod], training, p, log)
        summary[mod] = block
        details["modalities"][mod] = det
        if training:
            all_concepts |= set(freqs[mod]["concept"].tolist())
        for k, v in concepts.items():
            concept_cols[k] += list(v)
        if concepts:
            concept_cols["modality"] += [mod] * len(concepts["concept"])
        sample_cols["modality"] += [mod] * n
        sample_cols["row"] += list(range(n))
        sample_cols["id"] += list(labels[mod][0])
        sample_cols["label"] += list(labels[mod][1])
        for k, v in samples.items():
            sample_cols[k] += list(v)
    if training:
        summary["n_concepts"] = len(all_concepts)
    return FrequencyResult(summary, details, concept_cols, sample_cols, plot, source)
