"""The CLIP loss on a double ellipsoid (paper §5: Eqs. 7-9, Fig. 6, Property 6).

Conventions used throughout
---------------------------
* A batch holds ``M`` pairs: image row ``j`` of ``image`` is paired with text row ``j`` of ``text``.
* The logit matrix ``S`` has one row per image and one column per text: ``S[j, k] = logit(image j, text k)``.
  Geometries (``logits``):

  - ``cosine``       ``S = scale * cos(x_j, y_k)``: CLIP; the vectors are L2-normalised *after* any shift
                     (Eq. 7 with ``1/tau = scale``);
  - ``euclidean``    ``S = -scale * ||x_j - y_k||`` on unnormalised vectors (EuCLIP);
  - ``sq_euclidean`` ``S = -scale * ||x_j - y_k||**2`` on unnormalised vectors (EuCLIP's code, squared form).

* Per-pair terms (Eq. 8 split pair by pair)::

      alignment_j      = S[j, j]                 (Eq. 8's overbraced "alignment" term, as the paper writes it)
      alignment_loss_j = -S[j, j] = -alignment_j (that term with the minus sign it carries in Eq. 8)
      uniformity_j     = 1/2 log sum_k exp S[j, k]   (image j against every text)
                       + 1/2 log sum_k exp S[k, j]   (text j against every image)
      loss_j           = alignment_loss_j + uniformity_j = -alignment_j + uniformity_j,  Eq. 7 = mean_j loss_j.

  The curves (``curves.csv``) hold ``alignment_loss_*`` (the summand of the loss), never an unsigned
  "alignment" column, so that ``loss = alignment_loss + uniformity`` column by column.

* "Correctly classified" (default ``image_to_text``): the matched caption is the image's top-1, i.e.
  ``S[j, j] >= max_k S[j, k]`` (an exact tie counts as correct). ``text_to_image`` uses the column
  instead, ``both`` needs both. The loss (alignment, uniformity) of a subset is the mean of the per-pair
  terms over the subset, with every softmax still taken over the whole batch; so the subset means,
  weighted by their sizes, recombine to the all-pairs value.
* Retrieval accuracy: image-to-text recall@1 (``accuracy_i2t``) and text-to-image recall@1
  (``accuracy_t2i``) inside the batch, with the same tie rule.
* Shift (Eq. 9): ``v' = v - alpha * m`` with ``m`` the mean of the RAW embeddings of that modality over
  the whole set (every row of the embeddings file), applied to one modality; the other is unchanged.
* Subsets: by default (``classify_at="zero"``) a pair's class is the one it has at alpha = 0, so the
  correct/misclassified curves follow fixed sets of pairs; ``"each"`` re-classifies at every alpha.

This module holds the equations, each a pure function on arrays: Eq. 9 (:func:`shift_embeddings`), Eq. 7
(:func:`logits`, :func:`clip_loss`), Eq. 8 (:func:`alignment_uniformity`), their per-pair split
(:class:`PairTerms`, with :func:`direct_pair_terms` the reference computation: recompute, renormalise, full
float64 softmax) and the curves over alpha (:func:`curves_from_terms`, :func:`shift_summary`).  The α grid is
:func:`clipgeom.grids.alpha_grid`.  The fast sweep (:func:`clipgeom.sweep.sweep_pair_terms`) uses that a
shift changes every raw dot product affinely and every squared norm quadratically in alpha, so one product
``X Y^T`` per row block serves the whole alpha grid.  The alpha_sweep stage (batches, pairing, the
embeddings file, metrics) is :mod:`clipgeom.stages.loss`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GEOMETRIES = ("cosine", "euclidean", "sq_euclidean")
SHIFTS = ("image", "text")
CORRECT_BY = ("image_to_text", "text_to_image", "both")
#: norms are floored here before dividing (cosine logits of a zero vector)
TINY_NORM = 1e-12


# ----------------------------------------------------------------------------- the equations
def shift_embeddings(v: np.ndarray, m: np.ndarray, alpha: float) -> np.ndarray:
    """Eq. 9: ``v' = v - alpha * m`` for every row of ``v`` (``m`` the modality mean of the raw vectors).

    ``alpha = 0`` is CLIP as trained; ``alpha = 1`` centres the modality at the origin. No normalisation
    here: the cosine geometry normalises the shifted vectors when it forms the logits.
    """
    return np.asarray(v, np.float64) - float(alpha) * np.asarray(m, np.float64)[None, :]


def logits(image: np.ndarray, text: np.ndarray, scale: float, geometry: str = "cosine") -> np.ndarray:
    """The logit matrix of Eq. 7 (float64), rows = images, columns = texts.

    ``cosine``: ``scale * <v_i/|v_i|, v_t/|v_t|>`` (Eq. 7, ``scale = 1/tau``); ``euclidean``:
    ``-scale * |v_i - v_t|``; ``sq_euclidean``: ``-scale * |v_i - v_t|^2`` (EuCLIP, unnormalised vectors).
    """
    x = np.asarray(image, np.float64)
    y = np.asarray(text, np.float64)
    if geometry == "cosine":
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), TINY_NORM)
        yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), TINY_NORM)
        return float(scale) * (xn @ yn.T)
    from scipy.spatial.distance import cdist

    if geometry == "euclidean":
        return -float(scale) * cdist(x, y, "euclidean")
    if geometry == "sq_euclidean":
        return -float(scale) * cdist(x, y, "sqeuclidean")
    raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")


def _lse(s: np.ndarray, axis: int) -> np.ndarray:
    from scipy.special import logsumexp

    return logsumexp(s, axis=axis)


def clip_loss(s: np.ndarray) -> float:
    """Eq. 7: the symmetric cross-entropy of a batch whose pair j is (image j, text j).

    ``l = -1/2 E_j[ log softmax_images(S[:, j])_j + log softmax_texts(S[j, :])_j ]`` with ``S`` the logits
    (rows images, columns texts; for CLIP ``S = v_i . v_t / tau`` on unit vectors).
    """
    s = np.asarray(s, np.float64)
    d = np.diagonal(s)
    return float(-0.5 * np.mean((d - _lse(s, 0)) + (d - _lse(s, 1))))


def alignment_uniformity(s: np.ndarray) -> tuple[float, float]:
    """Eq. 8: ``(alignment, uniformity)`` as the paper writes them, with ``-alignment + uniformity = clip_loss(s)``
    (Eq. 7: ``l = -E_j[s_jj] + uniformity``).

    alignment ``= E_j[S[j, j]]``; uniformity ``= E_k[1/2 log sum_j e^{S[k, j]} + 1/2 log sum_j e^{S[j, k]}]``.
    """
    s = np.asarray(s, np.float64)
    align = float(np.mean(np.diagonal(s)))
    unif = float(np.mean(0.5 * _lse(s, 1) + 0.5 * _lse(s, 0)))
    return align, unif


# ----------------------------------------------------------------------------- per-pair terms
@dataclass
class PairTerms:
    """Per-alpha, per-pair pieces of Eqs. 7-8 for one batch, one geometry, one shifted modality.

    Arrays are ``(n_alpha, M)``: ``diag = S[j, j]``, ``row_lse = log sum_k e^{S[j, k]}``,
    ``col_lse = log sum_k e^{S[k, j]}``, ``i2t``/``t2i`` whether pair j is retrieved at top-1.
    """

    alphas: np.ndarray
    diag: np.ndarray
    row_lse: np.ndarray
    col_lse: np.ndarray
    i2t: np.ndarray
    t2i: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def alignment(self) -> np.ndarray:
        """Eq. 8's alignment term per pair, S[j, j] (enters the loss with a minus sign)."""
        return self.diag

    @property
    def alignment_loss(self) -> np.ndarray:
        """-S[j, j]: the alignment summand of the loss, ``loss = alignment_loss + uniformity``."""
        return -self.diag

    @property
    def uniformity(self) -> np.ndarray:
        return 0.5 * (self.row_lse + self.col_lse)

    @property
    def loss(self) -> np.ndarray:
        return self.alignment_loss + self.uniformity

    def correct(self, correct_by: str = "image_to_text") -> np.ndarray:
        if correct_by == "image_to_text":
            return self.i2t
        if correct_by == "text_to_image":
            return self.t2i
        if correct_by == "both":
            return self.i2t & self.t2i
        raise ValueError(f"unknown correct_by {correct_by!r}; expected one of {CORRECT_BY}")


def _terms_from_logits(s: np.ndarray) -> tuple[np.ndarray, ...]:
    d = np.diagonal(s).copy()
    return d, _lse(s, 1), _lse(s, 0), d >= s.max(axis=1), d >= s.max(axis=0)


def direct_pair_terms(
    image, text, alphas, *, scale: float, mean: np.ndarray, geometry: str = "cosine", shift: str = "image"
) -> PairTerms:
    """Reference for the sweep: for every alpha shift one modality (Eq. 9), re-form the logits from scratch
    (:func:`logits`, renormalising for cosine) and take full float64 log-sum-exps. O(alpha * M^2 * d)."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown shift {shift!r}; expected one of {SHIFTS}")
    x = np.asarray(image, np.float64)
    y = np.asarray(text, np.float64)
    alphas = np.asarray(alphas, np.float64)
    out = [np.empty((len(alphas), len(x))) for _ in range(3)] + [
        np.empty((len(alphas), len(x)), bool) for _ in range(2)
    ]
    for a, alpha in enumerate(alphas):
        xs, ys = (shift_embeddings(x, mean, alpha), y) if shift == "image" else (x, shift_embeddings(y, mean, alpha))
        for arr, val in zip(out, _terms_from_logits(logits(xs, ys, scale, geometry)), strict=False):
            arr[a] = val
    return PairTerms(alphas, *out)


# ----------------------------------------------------------------------------- curves over alpha
CURVE_KEYS = ("loss", "alignment_loss", "uniformity")
SUBSETS = ("all", "correct", "misclassified")
CLASSIFY_AT = ("zero", "each")


def curves_from_terms(terms: list[PairTerms], correct_by: str = "image_to_text", classify_at: str = "zero") -> dict:
    """Pool the per-pair terms of one or more batches into per-alpha curves.

    ``classify_at = "zero"``: a pair's class (correct or misclassified) is the one it has at alpha = 0 (the
    model as trained), so each subset holds the same pairs at every alpha; ``"each"``: pairs are classified
    anew at every alpha.

    Returns arrays over alpha: ``{loss,alignment_loss,uniformity}_{all,correct,misclassified}`` (means over the
    pairs of the subset, pooled over batches; NaN for an empty subset), ``n_pairs``, ``n_correct``,
    ``n_misclassified``, ``accuracy_i2t``, ``accuracy_t2i``.
    """
    out = {}
    n_alpha = len(terms[0].alphas)
    sums = {f"{q}_{s}": np.zeros(n_alpha) for q in CURVE_KEYS for s in SUBSETS}
    counts = {s: np.zeros(n_alpha) for s in SUBSETS}
    i2t = np.zeros(n_alpha)
    t2i = np.zeros(n_alpha)
    if classify_at not in CLASSIFY_AT:
        raise ValueError(f"unknown classify_at {classify_at!r}; expected one of {CLASSIFY_AT}")
    for t in terms:
        ok = t.correct(correct_by)
        if classify_at == "zero":
            i0 = np.flatnonzero(np.isclose(t.alphas, 0.0, atol=1e-12))
            if not i0.size:
                raise ValueError("classify_at='zero' needs alpha = 0 on the grid")
            ok = np.broadcast_to(ok[i0[0]], ok.shape)
        masks = {"all": np.ones_like(ok), "correct": ok, "misclassified": ~ok}
        vals = {"loss": t.loss, "alignment_loss": t.alignment_loss, "uniformity": t.uniformity}
        for s, mk in masks.items():
            counts[s] += mk.sum(1)
            for q in CURVE_KEYS:
                sums[f"{q}_{s}"] += np.where(mk, vals[q], 0.0).sum(1)
        i2t += t.i2t.sum(1)
        t2i += t.t2i.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        for key, total in sums.items():
            c = counts[key.rsplit("_", 1)[1]]
            out[key] = np.where(c > 0, total / np.maximum(c, 1), np.nan)
    out["n_pairs"] = counts["all"].astype(np.int64)
    out["n_correct"] = counts["correct"].astype(np.int64)
    out["n_misclassified"] = counts["misclassified"].astype(np.int64)
    out["accuracy_i2t"] = i2t / counts["all"]
    out["accuracy_t2i"] = t2i / counts["all"]
    if not all(t.info.get("text_to_image", True) for t in terms):
        out["accuracy_t2i"] = np.full(n_alpha, np.nan)
    return out


def argmin_alpha(alphas: np.ndarray, values: np.ndarray) -> float | None:
    """The alpha of the smallest finite value (the first on ties), or None when none is finite."""
    values = np.asarray(values, np.float64)
    ok = np.isfinite(values)
    if not ok.any():
        return None
    return float(np.asarray(alphas)[ok][np.argmin(values[ok])])


def value_at_zero(alphas: np.ndarray, values: np.ndarray) -> float | None:
    i = np.flatnonzero(np.isclose(np.asarray(alphas), 0.0, atol=1e-12))
    return float(np.asarray(values)[i[0]]) if i.size else None


def trend(alphas: np.ndarray, values: np.ndarray, lo: float = 0.0, hi: float = 1.0) -> float | None:
    """Spearman rank correlation of ``values`` with alpha over the grid points in [lo, hi] (Fig. 6's claim).

    −1: the curve falls monotonically from lo to hi; +1: it rises monotonically. None with fewer than 3
    finite points or a constant curve. Ties get average ranks.
    """
    a = np.asarray(alphas, np.float64)
    v = np.asarray(values, np.float64)
    keep = (a >= lo - 1e-9) & (a <= hi + 1e-9) & np.isfinite(v)
    if keep.sum() < 3:
        return None
    ra, rv = _ranks(a[keep]), _ranks(v[keep])
    ra, rv = ra - ra.mean(), rv - rv.mean()
    den = np.sqrt((ra @ ra) * (rv @ rv))
    return float(ra @ rv / den) if den > 0 else None


def _ranks(x: np.ndarray) -> np.ndarray:
    """Average ranks (1-based) of ``x``."""
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x), np.float64)
    r[order] = np.arange(1, len(x) + 1)
    for u in np.unique(x):  # average the ranks of ties
        tie = x == u
        if tie.sum() > 1:
            r[tie] = r[tie].mean()
    return r


def shift_summary(alphas: np.ndarray, curves: dict) -> dict:
    """``{argmin_alpha: {all, correct, misclassified}, loss_at_zero, accuracy_at_zero, trend_0_1}`` of one curve set.

    ``trend_0_1``: :func:`trend` of the correct and misclassified pairs' loss over α ∈ [0, 1] (the paper:
    the correct pairs' loss decreases monotonically toward α = 1, the misclassified pairs' loss increases).
    """
    return {
        "argmin_alpha": {s: argmin_alpha(alphas, curves[f"loss_{s}"]) for s in SUBSETS},
        "loss_at_zero": value_at_zero(alphas, curves["loss_all"]),
        "accuracy_at_zero": value_at_zero(alphas, curves["accuracy_i2t"]),
        "trend_0_1": {s: trend(alphas, curves[f"loss_{s}"]) for s in ("correct", "misclassified")},
    }
