"""The fast alpha sweep of Eqs. 7-9: every (geometry, shifted modality, alpha) of one batch from one pass
over row blocks (:func:`sweep_pair_terms`).

A shift by alpha (Eq. 9) changes every raw dot product affinely and every squared norm quadratically in
alpha, so one float64 product ``X_b Y^T`` per row block serves the whole alpha grid; per alpha the logits
follow from it through O(M) vectors (:func:`_make_spec`).  On CPU in float32 the per-alpha work of a block
runs in the fused kernel of :mod:`clipgeom.sweep_kernel`; elsewhere in torch ops.  Conventions (logits,
per-pair terms, correctness): :mod:`clipgeom.loss`, whose :func:`clipgeom.loss.direct_pair_terms` is the
reference it is tested against.
"""

from __future__ import annotations

import math

import numpy as np

from clipgeom import sweep_kernel
from clipgeom.loss import GEOMETRIES, SHIFTS, TINY_NORM, PairTerms


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
    eps2 = TINY_NORM**2
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


SERIAL_BELOW = 1 << 22  # M^2 below this: one thread (a thread wake-up costs more than the work it gets)
# exp arguments are clamped here before exponentiating: exp of far more negative values underflows to
# denormals, which x86 computes up to ~50x slower; the clamp adds at most M * e^-80 relative to the sum's
# largest term (which is 1).
_EXP_FLOOR = -80.0


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
    progress=None,
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

    ``progress``: called with the number of rows after each row block (every geometry, shift and alpha of
    the block done), e.g. :meth:`clipgeom.progress.Progress.update`.
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
                progress,
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
    progress=None,
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
    p0 = scale / torch.sqrt(torch.clamp(v["nx"], min=TINY_NORM**2))
    qf = 1.0 / torch.sqrt(torch.clamp(v["ny"], min=TINY_NORM**2))
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
        if progress is not None:
            progress(j1 - j0)
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
