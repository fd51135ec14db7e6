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

The fast sweep (:func:`sweep_pair_terms`) uses that a shift changes every raw dot product affinely
and every squared norm quadratically in alpha, so one product ``X Y^T`` per row block serves the whole
alpha grid; :func:`direct_pair_terms` is the slow reference (recompute, renormalise, full float64 softmax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from clipgeom import sweep_kernel

GEOMETRIES = ("cosine", "euclidean", "sq_euclidean")
SHIFTS = ("image", "text")
CORRECT_BY = ("image_to_text", "text_to_image", "both")
CAPTION_POLICIES = ("first", "random")
_TINY_NORM = 1e-12


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
        xn = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _TINY_NORM)
        yn = y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), _TINY_NORM)
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


# ----------------------------------------------------------------------------- the fast sweep
class _Spec:
    """How one (geometry, shifted modality) turns a block's base matrix into logits, for every alpha.

    The logits of a block are ``(base + row_add[:, None] + col_add[None, :]) * row_mul[:, None]
    * col_mul[None, :]``, and for ``euclidean`` then ``post * sqrt(max(., 0))``; absent vectors are None.
    Vectors are ``(n_alpha, M)``, computed in float64 and kept in the compute dtype too.
    """

    def __init__(self, kind, base, row_add=None, col_add=None, row_mul=None, col_mul=None, post=None, cdt=None):
        self.kind, self.base, self.post = kind, base, post
        self.f64 = dict(row_add=row_add, col_add=col_add, row_mul=row_mul, col_mul=col_mul)
        self.c = {k: (None if t is None else t.to(cdt)) for k, t in self.f64.items()}


def _make_spec(geometry, shift, alphas, scale, v, cdt, torch):
    """Eq. 9 in closed form: shifting by alpha changes dot products affinely and squared norms quadratically."""
    al = torch.as_tensor(alphas, dtype=torch.float64, device=v["device"])[:, None]  # (A, 1)
    eps2 = _TINY_NORM**2
    if geometry == "cosine":
        nx, ny = v["nx"], v["ny"]
        if shift == "image":  # x' = x - a m:  S = scale * (x.y - a m.y) / (|x'| |y|),  base = x.y/|y|
            a, b, mm = v["a_image"], v["b_image"], v["mm_image"]
            p = scale / torch.sqrt(torch.clamp(nx[None] - 2 * al * a[None] + al**2 * mm, min=eps2))
            q = 1.0 / torch.sqrt(torch.clamp(ny, min=eps2))
            return _Spec("cos_image", "Gq", col_add=-al * (b * q)[None], row_mul=p, cdt=cdt)
        # y' = y - a m: S = scale * (x.y - a x.m) / (|x| |y'|),  base = scale x.y/|x|
        a, b, mm = v["a_text"], v["b_text"], v["mm_text"]
        p0 = scale / torch.sqrt(torch.clamp(nx, min=eps2))
        q = 1.0 / torch.sqrt(torch.clamp(ny[None] - 2 * al * b[None] + al**2 * mm, min=eps2))
        return _Spec("cos_text", "Gp", row_add=-al * (a * p0)[None], col_mul=q, cdt=cdt)
    # Euclidean family, in coordinates translated by a common centre (distances do not change):
    # |x - a m - y|^2 = |x|^2 + |y|^2 - 2 x.y - 2a x.m + 2a y.m + a^2 |m|^2 (image shift); text: y - a m.
    nx, ny = v["nxc"], v["nyc"]
    if shift == "image":
        a, b, mm = v["ac_image"], v["bc_image"], v["mm_image"]
        r = nx[None] - 2 * al * a[None] + al**2 * mm
        c = ny[None] + 2 * al * b[None]
    else:
        a, b, mm = v["ac_text"], v["bc_text"], v["mm_text"]
        r = nx[None] + 2 * al * a[None]
        c = ny[None] - 2 * al * b[None] + al**2 * mm
    if geometry == "sq_euclidean":  # base = 2 scale x.y
        return _Spec("sq", "H2", row_add=-scale * r, col_add=-scale * c, cdt=cdt)
    if geometry == "euclidean":  # base = -2 x.y
        return _Spec("euc", "Hm", row_add=r, col_add=c, post=-scale, cdt=cdt)
    raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")


def _block_logits(spec, a, base, rows, cols, out, torch):
    """Write the logits ``S`` of one (row block, column set) for alpha index ``a`` into ``out``."""
    c = spec.c
    ra = None if c["row_add"] is None else c["row_add"][a, rows]
    ca = None if c["col_add"] is None else c["col_add"][a, cols]
    if ra is not None:
        torch.add(base, ra[:, None], out=out)
        if ca is not None:
            out.add_(ca[None, :])
    elif ca is not None:
        torch.add(base, ca[None, :], out=out)
    else:
        out.copy_(base)
    if c["row_mul"] is not None:
        out.mul_(c["row_mul"][a, rows][:, None])
    if c["col_mul"] is not None:
        out.mul_(c["col_mul"][a, cols][None, :])
    if spec.post is not None:
        out.clamp_(min=0).sqrt_().mul_(spec.post)
    return out


def _shifted_block(spec, a, base, rows, j0, out, need_colmax, torch):
    """``out <- S - r`` for one row block over all columns, with ``r`` the exact row maxima of ``S``.

    Returns ``(r, diag, i2t, colmax, dcmp)``: ``r`` and ``diag = S[j, j]`` in float64, ``i2t`` whether
    the diagonal attains its row maximum; with ``need_colmax`` also the block's column maxima of a score
    that orders each column like ``S`` (``S`` itself, or ``-T`` for ``euclidean``) and the diagonal in
    that score, computed by the same arithmetic so that ``dcmp >= colmax`` is an exact test (else None).
    Each kind uses as few full passes as its algebra allows (row shifts are folded where they commute).
    """
    c = spec.c
    b = out.shape[0]
    ar = torch.arange(b, device=out.device)
    dg_idx = (ar, ar + j0)
    colmax = dcmp = None
    if spec.kind == "cos_image" and not need_colmax:
        # U = base + col_add; S = p_j U; p_j > 0 so the row argmax of S is that of U
        p = c["row_mul"][a, rows]
        torch.add(base, c["col_add"][a][None, :], out=out)
        u = torch.amax(out, dim=1)
        du = out[dg_idx]
        i2t = du >= u
        r = u * p
        torch.addcmul((-r)[:, None], out, p[:, None], out=out).clamp_(min=_EXP_FLOOR)
        return r.double(), du.double() * p.double(), i2t, None, None
    if spec.kind == "sq":
        # U = base + col_add = S - row_add_j: the row shift of S is that of U
        ra = spec.f64["row_add"][a, rows]
        torch.add(base, c["col_add"][a][None, :], out=out)
        u = torch.amax(out, dim=1)
        du = out[dg_idx]
        i2t = du >= u
        if need_colmax:
            sfull = out + c["row_add"][a, rows][:, None]
            colmax, dcmp = torch.amax(sfull, dim=0), sfull[dg_idx]
        out.sub_(u[:, None]).clamp_(min=_EXP_FLOOR)
        return u.double() + ra, du.double() + ra, i2t, colmax, dcmp
    if spec.kind == "euc":
        # T = sqrt(max(D, 0)); S = post T with post < 0: row max of S is post * row min of T
        torch.add(base, c["row_add"][a, rows][:, None], out=out)
        out.add_(c["col_add"][a][None, :]).clamp_(min=0).sqrt_()
        tmin = torch.amin(out, dim=1)
        dt = out[dg_idx]
        i2t = dt <= tmin
        if need_colmax:
            colmax, dcmp = -torch.amin(out, dim=0), -dt
        r = tmin * spec.post
        torch.addcmul(
            (-r)[:, None], out, torch.full((1, 1), spec.post, dtype=out.dtype, device=out.device), out=out
        ).clamp_(min=_EXP_FLOOR)
        return r.double(), dt.double() * spec.post, i2t, colmax, dcmp
    # generic: materialise S
    _block_logits(spec, a, base, rows, slice(None), out, torch)
    r = torch.amax(out, dim=1)
    d = out[dg_idx]
    if need_colmax:
        colmax, dcmp = torch.amax(out, dim=0), d
    i2t = d >= r
    out.sub_(r[:, None]).clamp_(min=_EXP_FLOOR)
    return r.double(), d.double(), i2t, colmax, dcmp


def default_row_block(n: int, target_elements: int = 1 << 21) -> int:
    """Rows per block so that one block of logits holds about ``target_elements`` values (8 MB in float32:
    a block and its base matrix stay in a typical L3 cache, and each torch call has enough work)."""
    return int(max(16, min(max(n, 1), target_elements // max(n, 1))))


SERIAL_BELOW = 1 << 22
# exp arguments are clamped here before exponentiating: exp of far more negative values underflows to
# denormals, which x86 computes up to ~50x slower; the clamp adds at most M * e^-80 relative to the sum's
# largest term (which is 1).
_EXP_FLOOR = -80.0  # M^2 below this: one thread (a thread wake-up costs more than the work it gets)


def sweep_pair_terms(
    image,
    text,
    alphas,
    *,
    scale: float,
    means: dict,
    geometries=("cosine",),
    shifts=SHIFTS,
    row_block: int | None = None,
    threads: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
    text_to_image: bool = True,
    two_exp: str | bool = "auto",
    kernel: str = "auto",
) -> dict:
    """The alpha sweep of Eq. 9 for every geometry and shifted modality at once: ``{(geometry, shift): PairTerms}``.

    ``means = {"image": m_i, "text": m_t}`` (raw means over the whole set). One pass over row blocks of
    the ``M`` pairs: per block one float64 product ``X_b Y^T`` (the Euclidean geometries use it translated
    to a common centre), rounded once to ``dtype``, feeds every (geometry, shift, alpha): per alpha the logits
    follow from it through O(M) vectors (dot products are affine and squared norms quadratic in alpha).
    Then a single ``exp`` pass, shifted by the exact row maxima, feeds the row sums (image->text) and,
    through a matrix-vector product with ``exp(row max - block max)``, the column sums (text->image),
    accumulated in float64 in a running frame. Row (and, with ``text_to_image``, column) maxima give
    top-1 correctness. Columns whose sums may have lost terms to float underflow (only with extreme logit
    ranges, e.g. Euclidean logits at a large scale) are recomputed exactly in a second pass, each shifted
    by its own maximum; ``info["fallback_columns"]`` counts them. ``two_exp`` (default ``"auto"``: the
    Euclidean geometries) instead takes a second exp pass per alpha shifted by each block's column maxima,
    exact for any logit range. Memory is O(row_block * M). ``threads`` sets torch's thread count (and the
    fused kernel's number of row chunks) for the call (restored after); batches with fewer than 2048 pairs
    run on one thread.

    ``kernel``: on CPU in float32 the per-alpha work of a block runs in one fused compiled loop
    (:mod:`clipgeom.sweep_kernel`, numba) instead of ~9 torch passes; ``"torch"`` forces the torch ops
    (the GPU path), ``"fused"`` requires the kernel. Both give the same values to float32 rounding.
    """
    from clipgeom.threads import torch as _import_torch

    torch = _import_torch()

    geometries = tuple(geometries)
    shifts = tuple(shifts)
    for g in geometries:
        if g not in GEOMETRIES:
            raise ValueError(f"unknown geometry {g!r}; expected one of {GEOMETRIES}")
    for s in shifts:
        if s not in SHIFTS:
            raise ValueError(f"unknown shift {s!r}; expected one of {SHIFTS}")
    if dtype not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    cdt = {"float32": torch.float32, "float64": torch.float64}[dtype]
    dev = torch.device(device)
    old_threads = torch.get_num_threads()
    n = len(image)
    if threads or n * n < SERIAL_BELOW:
        torch.set_num_threads(1 if n * n < SERIAL_BELOW else int(threads))
    n_threads = torch.get_num_threads()  # also the fused kernel's chunks (its own thread pool, not numba's)
    fused = _use_fused(kernel, dev, cdt, torch)
    try:
        with torch.no_grad():
            return _sweep(
                torch,
                image,
                text,
                np.asarray(alphas, np.float64),
                float(scale),
                means,
                geometries,
                shifts,
                row_block,
                dev,
                cdt,
                bool(text_to_image),
                two_exp,
                fused,
                n_threads,
            )
    finally:
        torch.set_num_threads(old_threads)


def _sweep(
    torch,
    image,
    text,
    alphas,
    scale,
    means,
    geometries,
    shifts,
    row_block,
    dev,
    cdt,
    need_colmax,
    two_exp="auto",
    fused=False,
    n_threads=1,
):
    f64 = torch.float64
    x64 = torch.as_tensor(np.asarray(image, np.float64), device=dev)
    y64 = torch.as_tensor(np.asarray(text, np.float64), device=dev)
    n = x64.shape[0]
    if y64.shape[0] != n or x64.ndim != 2 or y64.ndim != 2 or x64.shape[1] != y64.shape[1]:
        raise ValueError(f"image and text must pair row by row, got shapes {tuple(x64.shape)} and {tuple(y64.shape)}")
    if n == 0:
        raise ValueError("empty batch")
    n_alpha = len(alphas)
    block = int(row_block) if row_block else default_row_block(n)
    euc_needed = any(g != "cosine" for g in geometries)

    # O(M) float64 vectors from which every alpha's logits follow
    v = {"device": dev}
    m = {s: torch.as_tensor(np.asarray(means[s], np.float64), device=dev) for s in shifts}
    v["nx"], v["ny"] = (x64 * x64).sum(1), (y64 * y64).sum(1)
    for s in shifts:
        v[f"mm_{s}"] = float(m[s] @ m[s])
        v[f"a_{s}"], v[f"b_{s}"] = x64 @ m[s], y64 @ m[s]
    p0 = scale / torch.sqrt(torch.clamp(v["nx"], min=_TINY_NORM**2))
    qf = 1.0 / torch.sqrt(torch.clamp(v["ny"], min=_TINY_NORM**2))
    if euc_needed:
        # Euclidean geometries work in coordinates translated by c (distances do not change), which keeps
        # the rounded products small: (x-c).(y-c) = x.y - x.c - y.c + c.c, from the same float64 product
        c = 0.5 * (x64.mean(0) + y64.mean(0))
        cc = float(c @ c)
        xcd, ycd = x64 @ c, y64 @ c
        v["nxc"], v["nyc"] = v["nx"] - 2 * xcd + cc, v["ny"] - 2 * ycd + cc
        for s in shifts:
            cm = float(c @ m[s])
            v[f"ac_{s}"], v[f"bc_{s}"] = v[f"a_{s}"] - cm, v[f"b_{s}"] - cm
    combos = [(g, s) for g in geometries for s in shifts]
    specs = {k: _make_spec(k[0], k[1], alphas, scale, v, cdt, torch) for k in combos}

    def bases_for(j0, j1, cols=None):
        """Lazily built base matrices of one row block (optionally restricted to columns ``cols``).

        The products are formed in float64 and rounded once to the compute dtype."""
        cache = {}
        cs = slice(None) if cols is None else cols

        def get(name):
            if name in cache:
                return cache[name]
            if "G" not in cache:  # one float64 product per block serves every geometry
                # (torch's GEMM, not numpy's: OpenBLAS threads spin after a product and slowed the fused
                # kernel that follows by 1.5x; torch's OpenMP threads sleep under OMP_WAIT_POLICY=PASSIVE)
                cache["G"] = torch.mm(x64[j0:j1], y64[cs].t())
            g = cache["G"]
            if name == "Gq":
                val = g * qf[cs][None, :]
            elif name == "Gp":
                val = g * p0[j0:j1, None]
            else:
                if "Gc" not in cache:
                    cache["Gc"] = g - xcd[j0:j1, None] - ycd[cs][None, :] + cc
                val = cache["Gc"] * (2.0 * scale if name == "H2" else -2.0)
            cache[name] = val.to(cdt)
            return cache[name]

        return get

    def new(dt=f64, fill=0.0):
        return torch.full((n_alpha, n), fill, dtype=dt, device=dev)

    two = {k: (k[0] != "cosine") if two_exp == "auto" else bool(two_exp) for k in combos}
    acc = {
        k: dict(
            diag=new(),
            row_lse=new(),
            i2t=torch.zeros((n_alpha, n), dtype=torch.bool, device=dev),
            colsum=new(),
            colmax=new(cdt, -math.inf) if need_colmax else None,
            dcmp=new(cdt) if need_colmax else None,
            frame=new(f64, -math.inf) if two[k] else torch.full((n_alpha,), -math.inf, dtype=f64, device=dev),
        )
        for k in combos
    }
    kname = "fused" if fused else "torch"
    if fused:
        vecs = {k: _kernel_vectors(specs[k], n_alpha, n) for k in combos}
        views = {
            k: {name: (t.numpy() if t is not None else np.empty((1, 1), np.float32)) for name, t in acc[k].items()}
            for k in combos
        }
    buf = None if fused else torch.empty((block, n), dtype=cdt, device=dev)
    buf2 = torch.empty((block, n), dtype=cdt, device=dev) if any(two.values()) and not fused else None
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        rows = slice(j0, j1)
        get = bases_for(j0, j1)
        s_blk = None if fused else buf[: j1 - j0]
        for k in combos:
            spec, st = specs[k], acc[k]
            base = get(spec.base)
            if fused:
                sweep_kernel.run_block(
                    spec.kind, base.numpy(), j0, vecs[k], spec.post or 0.0, two[k], need_colmax, n_threads, views[k]
                )
                continue
            if two[k]:
                for a in range(n_alpha):
                    _two_exp_block(spec, a, base, rows, j0, s_blk, buf2[: j1 - j0], st, need_colmax, torch)
                continue
            for a in range(n_alpha):
                r, d, i2t, cmax, dcmp = _shifted_block(spec, a, base, rows, j0, s_blk, need_colmax, torch)
                st["diag"][a, rows] = d
                st["i2t"][a, rows] = i2t
                if need_colmax:
                    torch.maximum(st["colmax"][a], cmax, out=st["colmax"][a])
                    st["dcmp"][a, rows] = dcmp
                s_blk.exp_()
                st["row_lse"][a, rows] = r + torch.log(s_blk.sum(1).to(f64))
                rb = r.max()
                cs = torch.mv(s_blk.t(), torch.exp(torch.clamp(r - rb, min=_EXP_FLOOR)).to(cdt)).to(f64)
                fr = st["frame"][a]
                new_fr = torch.maximum(fr, rb)
                st["colsum"][a].mul_(torch.exp(fr - new_fr)).add_(cs * torch.exp(rb - new_fr))
                st["frame"][a] = new_fr
        del get
    del buf, buf2

    # Column sums can lose terms to underflow only where the column lies far below the frame; such
    # columns (flagged from their maximum, or from a lower bound on it) are recomputed exactly.
    # every summed term is exact down to max(float tiny, e^_EXP_FLOOR) in the frame's units
    log_tiny = max(math.log(torch.finfo(cdt).tiny), _EXP_FLOOR) + math.log(2.0)
    margin = math.log(n) + log_tiny + 25.0
    out = {}
    for k in combos:
        st = acc[k]
        if two[k]:  # exact per-column frames: nothing to recompute
            t2i = st["dcmp"] >= st["colmax"] if need_colmax else torch.zeros_like(st["i2t"])
            out[k] = PairTerms(
                alphas.copy(),
                st["diag"].cpu().numpy(),
                st["row_lse"].cpu().numpy(),
                (st["frame"] + torch.log(st["colsum"])).cpu().numpy(),
                st["i2t"].cpu().numpy(),
                t2i.cpu().numpy(),
                info={
                    "fallback_columns": 0,
                    "row_block": block,
                    "dtype": str(cdt).split(".")[-1],
                    "text_to_image": need_colmax,
                    "two_exp": True,
                    "kernel": kname,
                },
            )
            continue
        col_lse = st["frame"][:, None] + torch.log(st["colsum"])
        if need_colmax:
            # the score is S itself, or -T = S / |post| for euclidean
            colmax = st["colmax"].to(f64) * (-specs[k].post if specs[k].kind == "euc" and not fused else 1.0)
            flagged = colmax < st["frame"][:, None] + margin
            t2i = st["dcmp"] >= st["colmax"]
        else:
            flagged = (col_lse - math.log(n)) < st["frame"][:, None] + margin
            t2i = torch.zeros_like(st["i2t"])
        n_flag = int(flagged.sum())
        if n_flag:
            cols = torch.nonzero(flagged.any(0)).flatten()
            col_lse[:, cols] = _exact_columns(torch, specs[k], cols, n, block, bases_for, cdt, n_alpha, dev)
        out[k] = PairTerms(
            alphas.copy(),
            st["diag"].cpu().numpy(),
            st["row_lse"].cpu().numpy(),
            col_lse.cpu().numpy(),
            st["i2t"].cpu().numpy(),
            t2i.cpu().numpy(),
            info={
                "fallback_columns": n_flag,
                "row_block": block,
                "dtype": str(cdt).split(".")[-1],
                "text_to_image": need_colmax,
                "two_exp": False,
                "kernel": kname,
            },
        )
    return out


def _use_fused(kernel, dev, cdt, torch) -> bool:
    """Whether the fused CPU kernel (:mod:`clipgeom.sweep_kernel`) runs: ``kernel`` ``"auto"`` (float32 on
    CPU with numba importable), ``"fused"`` (required) or ``"torch"`` (the torch ops, any device)."""
    if kernel not in ("auto", "fused", "torch"):
        raise ValueError(f"kernel must be auto, fused or torch, got {kernel!r}")
    ok = sweep_kernel.AVAILABLE and dev.type == "cpu" and cdt == torch.float32
    if kernel == "fused" and not ok:
        raise ValueError("the fused sweep kernel needs numba, a CPU device and dtype float32")
    return ok and kernel != "torch"


def _kernel_vectors(spec, n_alpha, n) -> dict:
    """The spec's per-alpha vectors as the fused kernel takes them: float32 (A, M) ``ra, ca, rm, cm``
    (absent ones as 0 or 1) and float64 ``ra64`` (the row term of the squared Euclidean logits)."""
    out = {}
    for name, key, fill in (
        ("ra", "row_add", 0.0),
        ("ca", "col_add", 0.0),
        ("rm", "row_mul", 1.0),
        ("cm", "col_mul", 1.0),
    ):
        t = spec.c[key]
        out[name] = (
            np.full((n_alpha, n), fill, np.float32)
            if t is None
            else np.ascontiguousarray(t.cpu().numpy(), dtype=np.float32)
        )
    ra64 = spec.f64["row_add"]
    out["ra64"] = (
        np.ascontiguousarray(ra64.cpu().numpy(), dtype=np.float64)
        if ra64 is not None and spec.kind == "sq"
        else np.zeros((1, 1))
    )
    return out


def _two_exp_block(spec, a, base, rows, j0, s_blk, e_blk, st, need_colmax, torch):
    """One alpha on one row block with exact shifts on both sides: ``exp(S - row max)`` for the row sums and
    ``exp(S - block column max)`` for the column sums, merged across blocks by an online log-sum-exp with
    one float64 frame per column. Two exp passes, but exact for any logit range (used for the Euclidean
    geometries, whose logits can spread far beyond float32's exponent range)."""
    f64 = torch.float64
    _block_logits(spec, a, base, rows, slice(None), s_blk, torch)
    b = s_blk.shape[0]
    ar = torch.arange(b, device=s_blk.device)
    r = torch.amax(s_blk, dim=1)
    cb = torch.amax(s_blk, dim=0)
    d = s_blk[ar, ar + j0]
    st["diag"][a, rows] = d.to(f64)
    st["i2t"][a, rows] = d >= r
    if need_colmax:
        torch.maximum(st["colmax"][a], cb, out=st["colmax"][a])
        st["dcmp"][a, rows] = d
    torch.sub(s_blk, r[:, None], out=e_blk).clamp_(min=_EXP_FLOOR).exp_()
    st["row_lse"][a, rows] = r.to(f64) + torch.log(e_blk.sum(1).to(f64))
    s_blk.sub_(cb[None, :]).clamp_(min=_EXP_FLOOR).exp_()
    bs = s_blk.sum(0).to(f64)
    cb = cb.to(f64)
    fr = st["frame"][a]
    new_fr = torch.maximum(fr, cb)
    st["colsum"][a] = st["colsum"][a] * torch.exp(fr - new_fr) + bs * torch.exp(cb - new_fr)
    st["frame"][a] = new_fr


def _exact_columns(torch, spec, cols, n, block, bases_for, cdt, n_alpha, dev):
    """``log sum_j exp S[j, cols]`` for every alpha by an online log-sum-exp over row blocks, each block
    shifted by its own column maxima (float64 accumulation)."""
    f64 = torch.float64
    run_max = torch.full((n_alpha, len(cols)), -math.inf, dtype=f64, device=dev)
    run_sum = torch.zeros((n_alpha, len(cols)), dtype=f64, device=dev)
    buf = torch.empty((block, len(cols)), dtype=cdt, device=dev)
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        get = bases_for(j0, j1, cols)
        base = get(spec.base)
        s_blk = buf[: j1 - j0]
        for a in range(n_alpha):
            _block_logits(spec, a, base, slice(j0, j1), cols, s_blk, torch)
            bmax = torch.amax(s_blk, dim=0)
            s_blk.sub_(bmax[None, :]).clamp_(min=_EXP_FLOOR).exp_()
            bsum = s_blk.to(f64).sum(0)
            bmax = bmax.to(f64)
            new_max = torch.maximum(run_max[a], bmax)
            run_sum[a] = run_sum[a] * torch.exp(run_max[a] - new_max) + bsum * torch.exp(bmax - new_max)
            run_max[a] = new_max
    return run_max + torch.log(run_sum)


# ----------------------------------------------------------------------------- batches and curves
def alpha_grid(alpha_min: float, alpha_max: float, alpha_step: float) -> np.ndarray:
    """``alpha_min, alpha_min + step, ..., alpha_max`` (inclusive, rounded to 10 decimals) with 0 added when
    it lies in the range but not on the grid (the loss at alpha = 0 is always reported)."""
    if alpha_step <= 0:
        raise ValueError(f"alpha_step must be > 0, got {alpha_step}")
    if alpha_max < alpha_min:
        raise ValueError(f"alpha_max ({alpha_max}) < alpha_min ({alpha_min})")
    k = int(math.floor((alpha_max - alpha_min) / alpha_step + 1e-9))
    grid = np.round(alpha_min + alpha_step * np.arange(k + 1), 10)
    if not np.any(np.isclose(grid, 0.0, atol=1e-12)):
        grid = np.sort(np.append(grid, 0.0))
    grid[np.isclose(grid, 0.0, atol=1e-12)] = 0.0
    return grid


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
) -> tuple[dict, dict]:
    """Eqs. 7-9 over an alpha grid for every geometry and shifted modality, pooled over ``batches``.

    ``image``/``text`` are the paired raw rows (pair j = row j of each); ``batches`` lists row indices
    (default: one batch of all rows). Returns ``(curves, info)`` with ``curves[(geometry, shift)]`` as in
    :func:`curves_from_terms`.
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


def compute_alpha_sweep(path, p: dict, log=None, threads: int | None = None) -> SweepResult:
    """The alpha_sweep stage on one embeddings file (settings ``p`` = ``stages.alpha_sweep``)."""
    import logging
    import time

    from clipgeom.h5io import read_embeddings

    log = log or logging.getLogger(__name__)
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
    )
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
