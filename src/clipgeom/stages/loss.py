"""The alpha_sweep stage (paper §5: Eqs. 7-9, Fig. 6): one embeddings.h5 -> the loss curves and metrics.

Chooses the pairs (one caption per image, :func:`select_pairs`) and the batches (:func:`make_batches`), runs
the fast sweep (:func:`clipgeom.sweep.sweep_pair_terms`) per batch and pools the per-pair terms into curves
(:func:`alpha_sweep`), and assembles summary, details and CSV columns (:func:`compute_alpha_sweep`).  The
equations and conventions are in :mod:`clipgeom.loss`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clipgeom.grids import alpha_grid
from clipgeom.loss import CURVE_KEYS, GEOMETRIES, SHIFTS, SUBSETS, curves_from_terms, shift_summary
from clipgeom.sweep import sweep_pair_terms

CAPTION_POLICIES = ("first", "random")


def make_batches(n: int, batch_size: int | None, n_batches: int | None, seed: int) -> list[np.ndarray]:
    """Row indices of each batch.

    ``batch_size`` null or >= n: one batch of all n pairs in order. Otherwise disjoint random batches of
    ``batch_size`` cut from a seeded permutation (a fresh permutation when one is used up), ``n_batches``
    of them (null: ``n // batch_size``, every pair at most once; the remainder is left out).
    """
    if batch_size is None or batch_size >= n:
        return [np.arange(n)]
    if batch_size < 2:
        raise ValueError(f"batch_size must be >= 2, got {batch_size}")
    per_perm = n // batch_size
    total = per_perm if n_batches is None else int(n_batches)
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < total:
        perm = rng.permutation(n)
        for i in range(min(per_perm, total - len(out))):
            out.append(np.sort(perm[i * batch_size : (i + 1) * batch_size]))
    return out


def select_pairs(emb, policy: str = "first", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(image_rows, text_rows)``: one caption per image. ``first``: the first caption in annotation (file)
    order (``Embeddings.first_caption_pairs``); ``random``: one caption per image drawn with ``seed``."""
    if policy == "first":
        return emb.first_caption_pairs()
    if policy == "random":
        idx = np.asarray(emb.text_image_index)
        valid = np.flatnonzero(idx >= 0)
        rng = np.random.default_rng(seed)
        order = valid[np.argsort(idx[valid], kind="stable")]
        img_rows, starts, counts = np.unique(idx[order], return_index=True, return_counts=True)
        pick = starts + (rng.random(len(starts)) * counts).astype(np.int64)
        return img_rows.astype(np.int64), order[pick].astype(np.int64)
    raise ValueError(f"unknown caption_policy {policy!r}; expected one of {CAPTION_POLICIES}")


def alpha_sweep(
    image,
    text,
    alphas,
    *,
    scale: float,
    means: dict,
    geometries=GEOMETRIES,
    shifts=SHIFTS,
    batches: list[np.ndarray] | None = None,
    correct_by: str = "image_to_text",
    classify_at: str = "zero",
    row_block: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    text_to_image: bool = True,
    progress=None,
) -> tuple[dict, dict]:
    """Eqs. 7-9 over an alpha grid for every geometry and shifted modality, pooled over ``batches``.

    ``image``/``text`` are the paired raw rows (pair j = row j of each); ``batches`` lists row indices
    (default: one batch of all rows). Returns ``(curves, info)`` with ``curves[(geometry, shift)]`` as in
    :func:`curves_from_terms`. ``progress``: called with the number of rows after each row block of each
    batch (:func:`clipgeom.sweep.sweep_pair_terms`).
    """
    image = np.asarray(image)
    text = np.asarray(text)
    batches = batches if batches is not None else [np.arange(len(image))]
    terms = {(g, s): [] for g in geometries for s in shifts}
    fallback = 0
    for idx in batches:
        res = sweep_pair_terms(
            image[idx],
            text[idx],
            alphas,
            scale=scale,
            means=means,
            geometries=geometries,
            shifts=shifts,
            row_block=row_block,
            threads=threads,
            device=device,
            dtype=dtype,
            text_to_image=text_to_image or correct_by != "image_to_text",
            progress=progress,
        )
        for k, t in res.items():
            terms[k].append(t)
            fallback += t.info["fallback_columns"]
    curves = {k: curves_from_terms(v, correct_by, classify_at) for k, v in terms.items()}
    return curves, {
        "fallback_columns": fallback,
        "n_batches": len(batches),
        "batch_sizes": sorted({len(b) for b in batches}),
    }


# ----------------------------------------------------------------------------- the stage
DEFINITIONS = {
    "batch": "pairs (image j, text j); default one batch of every image with its first caption in annotation "
    "order; with batch_size set, disjoint seeded random batches of that size, pooled",
    "shift": "Eq. 9: v' = v - alpha * m, m the mean of the RAW embeddings of the shifted modality over every row "
    "of embeddings.h5; the other modality is unchanged; cosine re-normalises after shifting",
    "loss": "Eq. 7 per pair j: -S[j,j] + 1/2 logsumexp_k S[j,k] + 1/2 logsumexp_k S[k,j] (rows images, columns "
    "texts, softmax over the whole batch); alignment_loss = -S[j,j] (minus Eq. 8's alignment term "
    "E_j[s_jj]), uniformity = the two half "
    "log-sum-exps (Eq. 8); subset values are means over the subset's pairs",
    "correct": "a pair is correctly classified when its logit attains the maximum of its row (image_to_text), "
    "of its column (text_to_image) or both, as set by correct_by; ties count as correct; "
    "classify_at zero: the class at alpha = 0 (the same pairs at every alpha), each: at every alpha",
    "accuracy": "recall@1 inside the batch, image-to-text (accuracy_i2t) and text-to-image (accuracy_t2i)",
    "geometries": "cosine: S = scale cos(x, y); euclidean: S = -scale |x - y|; sq_euclidean: S = -scale |x - y|^2 "
    "(unnormalised vectors)",
}


@dataclass
class SweepResult:
    alphas: np.ndarray
    scale: float
    curves: dict
    summary: dict
    details: dict
    columns: dict


def _resolve_device(device: str) -> str:
    if device in (None, "cpu"):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("stages.alpha_sweep.device is 'cuda' but torch sees no CUDA device")
    return device


def compute_alpha_sweep(path, p: dict, log=None, threads: int | None = None, progress=None) -> SweepResult:
    """The alpha_sweep stage on one embeddings file (settings ``p`` = ``stages.alpha_sweep``).

    Progress lines (rows of the batches swept, rate, ETA) go to ``progress`` (a stream; default the job's log,
    :class:`clipgeom.progress.Progress`)."""
    import logging
    import time

    from clipgeom.h5io import read_embeddings
    from clipgeom.progress import Progress

    log = log or logging.getLogger("clipgeom.loss")
    emb = read_embeddings(path)
    img_rows, txt_rows = select_pairs(emb, p.get("caption_policy", "first"), int(p.get("seed", 0)))
    if len(img_rows) < 2:
        raise ValueError(f"{path}: alpha_sweep needs at least 2 image-caption pairs, found {len(img_rows)}")
    n_unpaired = emb.image.shape[0] - len(img_rows)
    if n_unpaired:
        log.warning("%d image(s) without a caption are left out of the batch", n_unpaired)
    means = {"image": emb.image.astype(np.float64).mean(0), "text": emb.text.astype(np.float64).mean(0)}
    scale = float(p["logit_scale"]) if p.get("logit_scale") is not None else float(emb.logit_scale)
    if not scale > 0:
        raise ValueError(f"{path}: logit scale must be > 0, got {scale}")
    alphas = alpha_grid(float(p["alpha_min"]), float(p["alpha_max"]), float(p["alpha_step"]))
    geometries = list(dict.fromkeys(p.get("geometries") or GEOMETRIES))
    correct_by = p.get("correct_by", "image_to_text")
    classify_at = p.get("classify_at", "zero")
    text_to_image = bool(p.get("text_to_image", True)) or correct_by != "image_to_text"
    batches = make_batches(len(img_rows), p.get("batch_size"), p.get("n_batches"), int(p.get("seed", 0)))
    if len(batches) > 1 or len(batches[0]) < len(img_rows):
        left = len(img_rows) - len(np.unique(np.concatenate(batches)))
        log.info(
            "%d random batches of %d pairs (seed %s); %d pair(s) in no batch",
            len(batches),
            len(batches[0]),
            p.get("seed"),
            left,
        )
    device = _resolve_device(p.get("device", "cpu"))
    log.info(
        "alpha sweep: %d pairs, %d alphas in [%g, %g], geometries %s, logit scale %g (%s), device %s",
        len(img_rows),
        len(alphas),
        alphas[0],
        alphas[-1],
        geometries,
        scale,
        "config" if p.get("logit_scale") is not None else "embeddings.h5",
        device,
    )
    t0 = time.perf_counter()
    bar = Progress(
        sum(len(b) for b in batches),
        f"alpha sweep ({len(geometries)} geometries x {len(SHIFTS)} shifts x {len(alphas)} alphas per row)",
        "rows",
        progress,
    )
    curves, info = alpha_sweep(
        emb.image[img_rows],
        emb.text[txt_rows],
        alphas,
        scale=scale,
        means=means,
        geometries=geometries,
        shifts=SHIFTS,
        batches=batches,
        correct_by=correct_by,
        classify_at=classify_at,
        row_block=p.get("row_block"),
        threads=threads,
        device=device,
        dtype=p.get("dtype", "float32"),
        text_to_image=text_to_image,
        progress=bar.update,
    )
    bar.close()
    elapsed = time.perf_counter() - t0
    if info["fallback_columns"]:
        log.warning(
            "%d (alpha, column) log-sum-exps were recomputed exactly (logits spread too wide for the "
            "one-pass float sums)",
            info["fallback_columns"],
        )
    log.info("sweep took %.2f s", elapsed)

    def block(g):
        return {f"{s}_shift": shift_summary(alphas, curves[(g, s)]) for s in SHIFTS}

    summary = {}
    if "cosine" in geometries:
        summary.update(block("cosine"))
    else:
        log.warning("cosine is not among the geometries: the top-level summary keys are null")
        summary.update(
            {
                f"{s}_shift": {
                    "argmin_alpha": {k: None for k in SUBSETS},
                    "loss_at_zero": None,
                    "accuracy_at_zero": None,
                    "trend_0_1": {"correct": None, "misclassified": None},
                }
                for s in SHIFTS
            }
        )
    for g in geometries:
        if g != "cosine":
            summary[g] = block(g)
    summary["logit_scale"] = scale
    summary["n_pairs"] = int(len(img_rows))
    for g in geometries:
        for s in SHIFTS:
            ss = shift_summary(alphas, curves[(g, s)])
            log.info(
                "%s, %s shift: loss at 0 = %.5f, argmin alpha all/correct/misclassified = %s/%s/%s",
                g,
                s,
                ss["loss_at_zero"],
                *(ss["argmin_alpha"][k] for k in SUBSETS),
            )
    details = {
        "definitions": DEFINITIONS,
        "alphas": alphas,
        "geometries": geometries,
        "correct_by": correct_by,
        "classify_at": classify_at,
        "caption_policy": p.get("caption_policy", "first"),
        "batches": {"n_batches": info["n_batches"], "batch_sizes": info["batch_sizes"]},
        "means": {
            "image_norm": float(np.linalg.norm(means["image"])),
            "text_norm": float(np.linalg.norm(means["text"])),
            "gap": float(np.linalg.norm(means["image"] - means["text"])),
        },
        "fallback_columns": info["fallback_columns"],
        "device": device,
        "seconds": elapsed,
        "curves": {g: {s: curves[(g, s)] for s in SHIFTS} for g in geometries},
    }
    cols = {"geometry": [], "shift": [], "alpha": []}
    keys = [f"{q}_{s}" for q in CURVE_KEYS for s in SUBSETS] + [
        "n_pairs",
        "n_correct",
        "n_misclassified",
        "accuracy_i2t",
        "accuracy_t2i",
    ]
    cols.update({k: [] for k in keys})
    for g in geometries:
        for s in SHIFTS:
            c = curves[(g, s)]
            cols["geometry"] += [g] * len(alphas)
            cols["shift"] += [s] * len(alphas)
            cols["alpha"] += [float(a) for a in alphas]
            for k in keys:
                cols[k] += np.asarray(c[k]).tolist()
    return SweepResult(alphas, scale, curves, summary, details, cols)
