"""Concept frequency and conformity (paper §6, Prediction 1).

Prediction 1 of the paper: *common themes are embedded closer to the mean vector*. A concept that is
frequent in the model's training set should have higher conformity (Eq. 10,
C(v_j) = E_{k≠j}[cos(v_j, v_k)] within the modality's set) and, equivalently by Eq. 11, a higher
cos(m, v_j) with m the raw modality mean. This module holds the statistics that test it; the conformity
values themselves are :mod:`clipgeom.conformity`'s.

* :func:`spearman` — Spearman's ρ (scipy) between a frequency and a per-row value.
* :func:`concept_stats` — per-concept means and spreads of a per-row value (the concept level).
* :func:`bootstrap_spearman_ci` — a seeded percentile bootstrap CI of ρ: resampling rows (sample level)
  or concepts (concept level), whichever units the arrays given are.
* :func:`permutation_spearman` — the null: the same ρ when the frequencies are permuted across concepts
  (every row of a concept moves with its concept), with a one-sided p for ρ > 0.
* :func:`content_words`, :func:`word_counts`, :func:`word_log_frequency`, :func:`caption_log_frequency`,
  :func:`image_log_frequency` — a word-frequency *proxy* for datasets whose training frequencies are
  unknown: the mean log corpus frequency of a caption's content words (an image: the mean over its
  captions). A proxy measures frequency in the caption corpus it was counted on, **not** in the model's
  training data.

Arrays in, numbers out; no file access (the stage's orchestration is :mod:`clipgeom.stages.frequency`).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

#: the bootstrap's estimator, as metrics.json states it
BOOTSTRAP_ESTIMATOR = (
    "percentile bootstrap of Spearman's rho: B resamples with replacement of the units (rows at the sample "
    "level, concepts at the concept level), rho recomputed on each, the (1-level)/2 and (1+level)/2 quantiles "
    "of the B values; conformity and cos(m, v) are computed once on the whole set and not recomputed per resample"
)
#: the permutation null, as metrics.json states it
PERMUTATION_ESTIMATOR = (
    "the frequencies permuted across concepts (every row of a concept takes the permuted frequency of its "
    "concept), rho recomputed; one-sided p = (1 + #{rho_null >= rho}) / (1 + R) for the prediction rho > 0"
)

#: a small built-in English stop-word list (articles, pronouns, prepositions, conjunctions, auxiliaries)
STOP_WORDS = frozenset(
    """
    a an the and or but nor so yet of in on at to from by for with without within into onto upon over under
    above below across along around behind beside besides between beyond near off out up down through toward
    towards about against among as than then there here where when while which who whom whose what that this
    these those it its itself is are was were be been being am has have had having do does did doing will would
    can could shall should may might must i me my we us our you your he him his she her they them their
    some any each every all both either neither no not only own same such too very just also s t
    """.split()
)

_WORD = re.compile(r"[a-z]+")


# ---------------------------------------------------------------------------
# Spearman's rho
# ---------------------------------------------------------------------------
def _is_constant(a: np.ndarray) -> bool:
    return a.size == 0 or bool(np.all(a == a.flat[0]))


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ between ``x`` (a frequency) and ``y`` (conformity, Eq. 10, or cos(m, v)).

    ``scipy.stats.spearmanr`` (the Pearson correlation of the average ranks, ties averaged). NaN when
    fewer than 3 pairs or either input is constant: without a spread there is no ranking to correlate.
    Prediction 1 says ρ(training frequency, conformity) > 0.
    """
    from scipy.stats import spearmanr

    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    if x.size < 3 or _is_constant(x) or _is_constant(y):
        return float("nan")
    return float(spearmanr(x, y).statistic)


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties averaged, as spearmanr ranks)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def _tie_groups(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Each entry's group of equal values, groups numbered in increasing value; and the group count."""
    _, g = np.unique(x, return_inverse=True)
    return g.ravel().astype(np.int64), int(g.max()) + 1 if g.size else 0


def _weighted_ranks(groups: np.ndarray, n_groups: int, weights: np.ndarray) -> np.ndarray:
    """Average ranks of units that occur ``weights`` times each, ties (equal group) averaged.

    ``groups`` (n,) or (b, n) numbers each unit's tie group in increasing value; ``weights`` (b, n) one
    row per draw. A unit's rank is its group's: the units of lower groups plus (W_g + 1)/2, W_g the group's total
    weight; exactly ``rankdata`` of the sample with every unit repeated ``weights`` times. Returns (b, n).
    """
    b = weights.shape[0]
    groups = np.broadcast_to(groups, weights.shape)
    flat = (groups + n_groups * np.arange(b)[:, None]).ravel()
    wg = np.bincount(flat, weights=weights.ravel(), minlength=b * n_groups).reshape(b, n_groups)
    below = np.cumsum(wg, axis=1) - wg
    rank_g = below + (wg + 1.0) / 2.0
    return np.take_along_axis(rank_g, groups, axis=1)


def _weighted_pearson(rx: np.ndarray, ry: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of each row's (rx, ry) with the units weighted by ``w`` (NaN where a side is constant)."""
    tot = w.sum(axis=1, keepdims=True)
    mx = (w * rx).sum(axis=1, keepdims=True) / tot
    my = (w * ry).sum(axis=1, keepdims=True) / tot
    dx, dy = rx - mx, ry - my
    num = (w * dx * dy).sum(axis=1)
    den = np.sqrt((w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 1e-12 * np.maximum(tot[:, 0], 1.0) ** 3, num / np.where(den > 0, den, 1.0), np.nan)
    return np.clip(r, -1.0, 1.0)


def _block_rows(n: int, budget: int = 2_000_000) -> int:
    return max(1, budget // max(n, 1))


# ---------------------------------------------------------------------------
# the concept level
# ---------------------------------------------------------------------------
def concept_stats(concepts: Sequence, frequency: Sequence[float], values: Sequence[float]) -> dict:
    """Per-concept statistics of a per-row value (the concept level of Prediction 1).

    Returns ``{"concept", "frequency", "count", "mean", "std", "codes"}``: the distinct concepts (sorted),
    each one's frequency (every row of a concept must carry the same one: ValueError otherwise), its number
    of rows, the mean and the population standard deviation (the within-concept spread) of ``values`` over
    its rows, and ``codes``, the concept index of every row.
    """
    concepts = np.asarray([str(c) for c in concepts], dtype=object)
    frequency = np.asarray(frequency, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if not (len(concepts) == len(frequency) == len(values)):
        raise ValueError(
            f"concepts, frequency and values differ in length: {len(concepts)}, {len(frequency)}, {len(values)}"
        )
    labels, codes = np.unique(concepts, return_inverse=True)
    k = len(labels)
    count = np.bincount(codes, minlength=k).astype(np.int64)
    fsum = np.bincount(codes, weights=frequency, minlength=k)
    freq = fsum / np.maximum(count, 1)
    spread = np.abs(frequency - freq[codes])
    if spread.size and spread.max() > 1e-12 * max(1.0, float(np.abs(freq).max())):
        r = int(np.argmax(spread))
        raise ValueError(
            f"concept {concepts[r]!r} has more than one frequency (row {r}: {frequency[r]!r}, its mean "
            f"{freq[codes[r]]!r}); a concept has one training frequency"
        )
    mean = np.bincount(codes, weights=values, minlength=k) / np.maximum(count, 1)
    sq = np.bincount(codes, weights=(values - mean[codes]) ** 2, minlength=k) / np.maximum(count, 1)
    return {
        "concept": labels,
        "frequency": freq,
        "count": count,
        "mean": mean,
        "std": np.sqrt(sq),
        "codes": codes.astype(np.int64),
    }


# ---------------------------------------------------------------------------
# bootstrap CI
# ---------------------------------------------------------------------------
def bootstrap_spearman_ci(
    x: Sequence[float], y: Sequence[float], reps: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Percentile bootstrap CI of Spearman's ρ(x, y) (see :data:`BOOTSTRAP_ESTIMATOR`).

    The units resampled are the entries of ``x`` and ``y`` (pairs kept together): rows at the sample
    level, concepts at the concept level (pass each concept's frequency and mean). ``reps`` resamples
    drawn by ``numpy.random.default_rng(seed)``; resamples where either side is constant give no ρ and are
    left out (``n_valid``). Returns ``{"ci": [lo, hi], "reps", "n_valid", "level"}``; ``ci`` is
    ``[nan, nan]`` when no resample gives a ρ or ``reps`` is 0.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length: {x.size} and {y.size}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = x.size
    out = {"ci": [float("nan"), float("nan")], "reps": int(reps), "n_valid": 0, "level": float(level)}
    if reps <= 0 or n < 3:
        return out
    gx, kx = _tie_groups(x)
    gy, ky = _tie_groups(y)
    rng = np.random.default_rng(seed)
    rhos = []
    block = _block_rows(n)
    done = 0
    while done < reps:
        b = min(block, reps - done)
        idx = rng.integers(0, n, size=(b, n))
        # each resample as multiplicities of the original rows: its ranks and rho without sorting it
        w = np.bincount((idx + n * np.arange(b)[:, None]).ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        rhos.append(_weighted_pearson(_weighted_ranks(gx, kx, w), _weighted_ranks(gy, ky, w), w))
        done += b
    rhos = np.concatenate(rhos)
    valid = rhos[np.isfinite(rhos)]
    out["n_valid"] = int(valid.size)
    if valid.size:
        lo, hi = np.quantile(valid, [(1 - level) / 2, (1 + level) / 2])
        out["ci"] = [float(lo), float(hi)]
    return out


# ---------------------------------------------------------------------------
# permutation null
# ---------------------------------------------------------------------------
def permutation_spearman(
    codes: Sequence[int],
    concept_frequency: Sequence[float],
    row_values: Sequence[float],
    concept_values: Sequence[float] | None = None,
    reps: int = 1000,
    seed: int = 0,
) -> dict:
    """The null of Prediction 1: ρ when the frequencies are permuted across concepts (:data:`PERMUTATION_ESTIMATOR`).

    ``codes[j]`` is row j's concept (an index into ``concept_frequency``), ``row_values`` the per-row value
    (conformity or cos(m, v)), ``concept_values`` optionally each concept's mean of it. Each of the
    ``reps`` permutations π (``numpy.random.default_rng(seed)``) gives concept k the frequency of concept
    π(k); the sample-level ρ is recomputed over the rows (so rows of one concept move together: the null
    respects the concepts' clustering) and, with ``concept_values``, the concept-level ρ over the concepts.
    With each row its own concept (``codes = arange(n)``) this is the usual permutation test over rows.

    Returns ``{"sample": {...}, "concept": {...} | None}``, each with ``rho`` (observed), ``p`` (one-sided,
    ρ > 0: (1 + #{ρ_null >= ρ}) / (1 + R), R the permutations giving a ρ; the smallest p possible is
    1/(1 + R)), ``null_mean``, ``null_q025``, ``null_q975`` and ``reps``. NaN throughout when the observed ρ
    is undefined.
    """
    codes = np.asarray(codes, dtype=np.int64).ravel()
    cf = np.asarray(concept_frequency, dtype=np.float64).ravel()
    rv = np.asarray(row_values, dtype=np.float64).ravel()
    if codes.shape != rv.shape:
        raise ValueError(f"codes and row_values differ in length: {codes.size} and {rv.size}")
    if codes.size and (codes.min() < 0 or codes.max() >= cf.size):
        raise ValueError(f"codes must index concept_frequency (0..{cf.size - 1})")
    k = cf.size
    # each level as units (concepts) with a weight (their rows) and the sum of their rows' value ranks
    ry = _rank_rows(rv[None, :])[0]
    levels = {
        "sample": (
            cf[codes],
            rv,
            np.bincount(codes, minlength=k).astype(np.float64),
            np.bincount(codes, ry, k),
            ry @ ry,
        ),
    }
    if concept_values is not None:
        cv = np.asarray(concept_values, dtype=np.float64).ravel()
        if cv.shape != cf.shape:
            raise ValueError(f"concept_values has {cv.size} entries for {k} concepts")
        rc = _rank_rows(cv[None, :])[0]
        levels["concept"] = (cf, cv, np.ones(k), rc, rc @ rc)
    reps = max(int(reps), 0)
    out = {"concept": None}
    observed, nulls = {}, {}
    for name, (f_obs, values, *_) in levels.items():
        observed[name] = spearman(f_obs, values)
        nulls[name] = []
    live = [name for name in levels if math.isfinite(observed[name])]
    gcf, n_groups = _tie_groups(cf)
    rng = np.random.default_rng(seed)
    block = _block_rows(4 * k)
    done = 0
    while live and done < reps:
        b = min(block, reps - done)
        perms = rng.permuted(np.broadcast_to(np.arange(k), (b, k)), axis=1)
        groups = gcf[perms]  # (b, K): concept k takes the frequency (tie group) of concept π(k)
        for name in live:
            _, _, weight, rank_sum, sum_sq = levels[name]
            # Pearson of the ranks over the rows, summed per concept: every row of concept k has rank rx_k
            n = weight.sum()
            mid = (n + 1.0) / 2.0  # the mean rank of n items, ties or not
            rx = _weighted_ranks(groups, n_groups, np.broadcast_to(weight, groups.shape))
            cov = rx @ rank_sum - n * mid * mid
            var_x = (rx * rx) @ weight - n * mid * mid
            var_y = sum_sq - n * mid * mid
            with np.errstate(invalid="ignore", divide="ignore"):
                r = np.where(var_x > 1e-9 * n, cov / np.sqrt(np.maximum(var_x, 1e-300) * var_y), np.nan)
            nulls[name].append(np.clip(r, -1.0, 1.0))
        done += b
    for name in levels:
        rho = observed[name]
        res = {
            "rho": rho,
            "p": float("nan"),
            "null_mean": float("nan"),
            "null_q025": float("nan"),
            "null_q975": float("nan"),
            "reps": 0,
        }
        null = np.concatenate(nulls[name]) if nulls[name] else np.zeros(0)
        null = null[np.isfinite(null)]
        if null.size:
            res["p"] = float((1 + np.sum(null >= rho - 1e-12)) / (1 + null.size))
            res["null_mean"] = float(null.mean())
            res["null_q025"], res["null_q975"] = (float(q) for q in np.quantile(null, [0.025, 0.975]))
            res["reps"] = int(null.size)
        out[name] = res
    return out


# ---------------------------------------------------------------------------
# the word-frequency proxy
# ---------------------------------------------------------------------------
PROXY_ESTIMATOR = (
    "PROXY, not training frequency: a caption's proxy is the mean over its content words of "
    "log((c_w + 1) / (T + V + 1)), c_w the word's count in the caption corpus, T the corpus's content-word "
    "tokens, V its distinct content words (add-one smoothing: a word absent from the corpus counts once); "
    "content words: lowercased runs of letters a-z of length >= 2, minus a built-in stop-word list; "
    "an image's proxy is the mean of its captions' proxies"
)


def content_words(text: str, stop_words: frozenset[str] = STOP_WORDS) -> list[str]:
    """The content words of a caption: lowercased runs of the letters a–z, at least 2 letters long,
    stop words (:data:`STOP_WORDS`) removed. Digits and punctuation separate words and are dropped."""
    return [w for w in _WORD.findall(str(text).lower()) if len(w) >= 2 and w not in stop_words]


def word_counts(corpus: Iterable[str], stop_words: frozenset[str] = STOP_WORDS) -> Counter:
    """Occurrences of every content word (:func:`content_words`) over a caption corpus."""
    counts: Counter = Counter()
    for text in corpus:
        counts.update(content_words(text, stop_words))
    return counts


def word_log_frequency(counts: Mapping[str, int]) -> tuple[dict, float]:
    """Natural-log relative frequency of each corpus word with add-one smoothing.

    log f(w) = log((c_w + 1) / (T + V + 1)), T = Σ c_w the corpus's content-word tokens and V the number of
    distinct words; one extra slot for every word the corpus lacks, which gets log(1 / (T + V + 1)).
    Returns ``({word: log f(w)}, log f(unseen))``.
    """
    total = int(sum(counts.values()))
    denom = total + len(counts) + 1
    table = {w: math.log((c + 1) / denom) for w, c in counts.items()}
    return table, math.log(1 / denom)


def caption_log_frequency(
    captions: Sequence[str], counts: Mapping[str, int], stop_words: frozenset[str] = STOP_WORDS
) -> np.ndarray:
    """The proxy of each caption: the **mean** log corpus frequency of its content words.

    The mean of the logs is the log of the geometric mean frequency: every content word weighs the same, a
    rare word lowers it as a frequent one raises it (the median was not chosen: on captions of 3–6 content
    words it is the middle word alone and ties often). NaN for a caption without content words. A proxy:
    frequency in the corpus counted, **not in the model's training data**.
    """
    table, unseen = word_log_frequency(counts)
    out = np.full(len(captions), np.nan)
    for j, text in enumerate(captions):
        words = content_words(text, stop_words)
        if words:
            out[j] = float(np.mean([table.get(w, unseen) for w in words]))
    return out


def image_log_frequency(caption_values: Sequence[float], text_image_index: Sequence[int], n_images: int) -> np.ndarray:
    """The proxy of each image: the mean of its captions' proxies (``text_image_index[j]`` is caption j's
    image; -1: none). NaN for an image without a caption that has a proxy."""
    v = np.asarray(caption_values, dtype=np.float64)
    idx = np.asarray(text_image_index, dtype=np.int64)
    if v.shape != idx.shape:
        raise ValueError(f"caption_values and text_image_index differ in length: {v.size} and {idx.size}")
    ok = (idx >= 0) & np.isfinite(v)
    s = np.bincount(idx[ok], weights=v[ok], minlength=n_images)[:n_images]
    c = np.bincount(idx[ok], minlength=n_images)[:n_images]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)
