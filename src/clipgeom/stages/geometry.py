"""The four geometry stages (paper §3–§4, EuCLIP Fig. 2): separability, thin_shell, covariance and
origin_distance, each from one embeddings.h5.

Each ``compute_<stage>`` reads the file in row chunks (:func:`clipgeom.h5io.iter_embedding_chunks`),
accumulates the moments with :class:`clipgeom.geometry.MomentAccumulator` (Chan/Welford parallel
update in float64), so the peak memory does not grow with the file beyond one float per sample for
the per-sample values the figures need (norms, distances), applies the equations of
:mod:`clipgeom.geometry` (and the KL estimators of :mod:`clipgeom.kl`) and returns a
:class:`StageResult`: the numbers of metrics.json, the CSV columns and the arrays of the figures.
Conventions (population moments, 0-based features, nats): :mod:`clipgeom.geometry`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from clipgeom.geometry import (
    ODD_NULL_ESTIMATOR,
    ROOT_DISTANCE_FORM,
    FeatureHistograms,
    MomentAccumulator,
    angle_deg,
    chi_mean,
    effective_rank,
    eigh_one_thread,
    excess_kurtosis,
    ks_chi,
    ks_chi_heldout,
    mean_cross_cosine,
    mean_over_std,
    mean_pairwise_cosine,
    mean_to_std_ratio,
    odd_null_medians,
    odd_null_summary,
    off_diagonal_dominance,
    participation_ratio,
    rms_norm_ddof,
    root_vector,
    row_norms,
    scaled_cosine_distance,
    separability,
    svm_boundary,
    svm_cv_accuracy,
    tag_features,
    tag_threshold_curve,
    thin_shell,
    threshold_grid,
    thresholds_for_count,
    top_features,
    whitening_from_eigh,
)
from clipgeom.h5io import MODALITIES, count_rows, iter_embedding_chunks
from clipgeom.kl import gaussian_kl, histogram_kl, histogram_kl_saturation

# the geometry stages log as "clipgeom.geometry" (the name their messages have always had)
_LOG = logging.getLogger("clipgeom.geometry")


@dataclass
class StageResult:
    """What a stage computed: ``summary`` and ``details`` for metrics.json, ``columns`` for the
    CSV, ``plot`` the arrays its figures need."""

    summary: dict
    details: dict
    columns: dict
    plot: dict = field(default_factory=dict)


def _check_rows(path, log) -> dict:
    rows = {}
    for mod in MODALITIES:
        n, d = count_rows(path, mod)
        if n < 2:
            raise ValueError(
                f"{path}: the {mod} modality has {n} row(s); the geometry stages need "
                f"at least 2 image and 2 text embeddings"
            )
        rows[mod] = (n, d)
    if rows["image"][1] != rows["text"][1]:
        raise ValueError(f"{path}: image width {rows['image'][1]} != text width {rows['text'][1]}")
    log.info("%s: %d image and %d text rows, d = %d", path, rows["image"][0], rows["text"][0], rows["image"][1])
    return rows


def _moments(path, mod, chunk_rows, full_cov=False, keep_norms=False, sample_idx=None):
    """One pass over a modality; optionally gathers the rows ``sample_idx`` (sorted)."""
    acc = MomentAccumulator(full_cov=full_cov, keep_norms=keep_norms)
    gathered = []
    start = 0
    for x in iter_embedding_chunks(path, mod, chunk_rows):
        acc.update(x)
        if sample_idx is not None:
            lo, hi = np.searchsorted(sample_idx, [start, start + len(x)])
            gathered.append(x[sample_idx[lo:hi] - start].astype(np.float32))  # stored precision
        start += len(x)
    sample = np.concatenate(gathered) if sample_idx is not None else None
    return acc, sample


def _log_zero(acc, mod, log):
    if acc.n_zero:
        log.warning("%s: %d row(s) with zero norm left out of the normalised quantities", mod, acc.n_zero)


def _quantiles(a) -> dict:
    a = np.asarray(a, float)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {}
    q = np.quantile(a, [0.0, 0.05, 0.5, 0.95, 1.0])
    return {"min": q[0], "p05": q[1], "median": q[2], "p95": q[3], "max": q[4], "mean": float(a.mean())}


def compute_separability(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Prop. 1, Eq. 5, Figs 2–3 (see the module docstring for conventions).

    Pass 1 (O(N·d)): per-feature mean/variance/min/max per modality and a seeded random row
    subsample (≤ ``svm_max_samples`` per modality) for the SVMs.  Pass 2 (O(N·d)): per-feature
    histograms of both modalities on shared equal-width bins (``kl_bins`` over the pooled
    [min, max] of each feature) for the KL estimate and the figures.
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    rng = np.random.default_rng(int(p["seed"]))
    accs, samples, sample_sizes = {}, {}, {}
    for mod in MODALITIES:
        n = rows[mod][0]
        k = min(n, int(p["svm_max_samples"]))
        idx = np.sort(rng.choice(n, size=k, replace=False)) if k < n else np.arange(n)
        if k < n:
            log.info("%s: SVMs use a random subsample of %d of %d rows (seed %d)", mod, k, n, p["seed"])
        accs[mod], samples[mod] = _moments(path, mod, chunk, sample_idx=idx)
        sample_sizes[mod] = k
    ai, at = accs["image"], accs["text"]
    sep = separability(ai.mean, ai.var, at.mean, at.var)
    ms = {mod: mean_over_std(accs[mod].mean, accs[mod].var) for mod in MODALITIES}

    # pass 2: per-feature histograms on shared bins
    lo, hi = np.minimum(ai.min, at.min), np.maximum(ai.max, at.max)
    hists = {}
    for mod in MODALITIES:
        h = FeatureHistograms(lo, hi, int(p["kl_bins"]))
        for x in iter_embedding_chunks(path, mod, chunk):
            h.update(x)
        if h.n_clipped:
            log.warning("%s: %d value(s) outside the histogram range were put in the end bins", mod, h.n_clipped)
        hists[mod] = h
    eps = float(p["kl_eps"])
    kl_it = np.array(
        [histogram_kl(a, b, eps) for a, b in zip(hists["image"].counts, hists["text"].counts, strict=False)]
    )
    kl_ti = np.array(
        [histogram_kl(b, a, eps) for a, b in zip(hists["image"].counts, hists["text"].counts, strict=False)]
    )
    kl_g = gaussian_kl(ai.mean, ai.var, at.mean, at.var)
    widths = (hists["image"].hi - hists["image"].lo) / hists["image"].bins
    kl_dens = kl_it / widths

    order = top_features(sep, sep.size)
    rank = np.empty(sep.size, dtype=np.int64)
    rank[order] = np.arange(1, sep.size + 1)
    top_k = int(p["top_k"])
    top_sep = order[:top_k]
    tags = tag_features(sep, float(p["tag_threshold"]))
    top2 = order[:2]
    f0 = int(order[0])
    sat, unmatched = histogram_kl_saturation(hists["image"].counts[f0], hists["text"].counts[f0])
    if sat:
        log.info(
            "histogram KL of feature %d is eps-limited: %.3g of the image mass lies in bins with no text", f0, unmatched
        )
    grid = threshold_grid(float(p["tag_curve_max"]), float(p["tag_curve_step"]))
    curve = tag_threshold_curve(sep, grid)
    paper_count = int(p["paper_n_tag_features"])
    t_paper = thresholds_for_count(grid, curve, paper_count)
    log.info(
        "tag features: %d at Sep > %g; %s",
        tags.size,
        p["tag_threshold"],
        f"{paper_count} for t in [{t_paper[0]:g}, {t_paper[1]:g}]"
        if t_paper
        else f"no grid threshold gives {paper_count}",
    )

    # SVMs (held-out, stratified k-fold) on the subsample
    x_all = np.concatenate([samples["image"], samples["text"]])
    y = np.concatenate([np.zeros(len(samples["image"]), int), np.ones(len(samples["text"]), int)])
    folds = int(p["svm_folds"])
    min_class = int(min(sample_sizes.values()))
    if min_class < folds:
        log.warning(
            "only %d rows in the smaller modality: SVM folds reduced from %d to %d", min_class, folds, max(2, min_class)
        )
        folds = max(2, min_class)
    svm_c, max_iter = float(p["svm_c"]), int(p["svm_max_iter"])
    log.info("linear SVM on features %s (%d-fold CV, %d rows)", top2.tolist(), folds, len(y))
    svm2 = svm_cv_accuracy(x_all[:, top2], y, folds, p["seed"], svm_c, max_iter)
    log.info("linear SVM on all %d features", x_all.shape[1])
    svm_all = svm_cv_accuracy(x_all, y, folds, p["seed"], svm_c, max_iter)
    for name, r in (("top-2", svm2), ("all-feature", svm_all)):
        if r["convergence_warnings"]:
            log.warning(
                "%s SVM: %d fit(s) did not converge in %d iterations", name, r["convergence_warnings"], max_iter
            )
    d = sep.size
    rng_ctrl = np.random.default_rng([int(p["seed"]), 1])
    rand_pairs = [np.sort(rng_ctrl.choice(d, size=2, replace=False)) for _ in range(int(p["svm_random_draws"]))]
    rand_acc = [svm_cv_accuracy(x_all[:, pr], y, folds, p["seed"], svm_c, max_iter)["accuracy"] for pr in rand_pairs]
    log.info(
        "control: linear SVM on 2 random features, %d draws: mean accuracy %.4f",
        len(rand_pairs),
        float(np.mean(rand_acc)),
    )
    paper_feats = [int(f) for f in p["paper_features"]]
    pf_ok = [0 <= f < d for f in paper_feats]
    for f, ok in zip(paper_feats, pf_ok, strict=False):
        if not ok:
            log.warning("paper feature %d skipped: the embeddings have d = %d features", f, d)
    pf_svm = None
    if len(paper_feats) >= 2 and all(pf_ok[:2]):
        pf_svm = svm_cv_accuracy(x_all[:, paper_feats[:2]], y, folds, p["seed"], svm_c, max_iter)
    else:
        log.warning("SVM on the paper's features skipped: needs two named features within d = %d", d)
    paper_block = {
        "indices": paper_feats,
        "sep": [float(sep[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
        "rank_by_sep": [int(rank[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
        "svm_accuracy": pf_svm["accuracy"] if pf_svm else None,
        "kl_gaussian": [float(kl_g[f]) if ok else None for f, ok in zip(paper_feats, pf_ok, strict=False)],
    }
    w, b, train_acc = svm_boundary(x_all[:, top2], y, svm_c, max_iter)
    log.info(
        "Sep max %.3f (feature %d); %d tag features (Sep > %g); SVM top-2 %.4f, all %.4f",
        sep[order[0]],
        order[0],
        tags.size,
        p["tag_threshold"],
        svm2["accuracy"],
        svm_all["accuracy"],
    )

    def feat_row(f):
        f = int(f)
        return {
            "feature": f,
            "sep": sep[f],
            "rank": int(rank[f]),
            "mean_image": ai.mean[f],
            "mean_text": at.mean[f],
            "std_image": ai.std[f],
            "std_text": at.std[f],
            "kl_image_text": kl_it[f],
            "kl_text_image": kl_ti[f],
            "kl_gaussian_image_text": kl_g[f],
        }

    summary = {
        "svm_top2_accuracy": svm2["accuracy"],
        "svm_random2_accuracy": float(np.mean(rand_acc)),
        "top2_features": [int(f) for f in top2],
        "n_tag_features": int(tags.size),
        "tag_threshold": float(p["tag_threshold"]),
        "tag_threshold_for_paper_count": t_paper,
        "kl_top_feature": kl_g[f0],
        "kl_estimator": "gaussian closed form, image‖text",
        "kl_top_feature_gaussian": kl_g[f0],
        "kl_top_feature_density": kl_dens[f0],
        "kl_top_feature_histogram": kl_it[f0],
        "kl_top_feature_histogram_saturated": bool(sat),
        "svm_all_accuracy": svm_all["accuracy"],
        "max_sep": sep[f0],
        "paper_features": paper_block,
    }
    details = {
        "n_image": rows["image"][0],
        "n_text": rows["text"][0],
        "dim": rows["image"][1],
        "feature_index_base": 0,
        "feature_index_note": (
            "feature indices are 0-based numpy column numbers; the paper's features 93, 134 and 494 "
            "(ViT-B/32, COCO) are most likely 0-based numpy indices too, so compare them directly"
        ),
        "top_separable": [feat_row(f) for f in top_sep],
        "top_mean_over_std": {
            mod: [
                {"feature": int(f), "abs_mean_over_std": ms[mod][f], "mean": accs[mod].mean[f], "std": accs[mod].std[f]}
                for f in top_features(ms[mod], top_k)
            ]
            for mod in MODALITIES
        },
        "tag_threshold": float(p["tag_threshold"]),
        "tag_features": [int(f) for f in tags],
        "tag_threshold_curve": {
            "criterion": "count of features with Sep > t (Eq. 5), strict",
            "paper_count": paper_count,
            "thresholds": [float(t) for t in grid],
            "n_tag_features": [int(c) for c in curve],
        },
        "kl": {
            "headline": "separability.kl_top_feature = Gaussian closed form KL(N(m_i, var_i) || N(m_t, var_t)) "
            "of the feature of largest Sep, population moments (nats)",
            "density_hypothesis": "kl_top_feature_density = sum_b f_b log(f_b / g_b) over density histograms "
            "f = counts / (N width), without the bin width (= histogram KL / width): "
            "a guess at the paper's unstated estimator, not a divergence estimate",
            "top_feature_bin_width": widths[f0],
            "top_feature_density": kl_dens[f0],
            "top_feature_histogram_saturated": bool(sat),
            "top_feature_unmatched_mass": unmatched,
            "estimator": "histogram plug-in KL(image || text) in nats, per feature (secondary)",
            "binning": f"{int(p['kl_bins'])} equal-width bins per feature over the pooled [min, max] of both "
            "modalities",
            "eps": eps,
            "smoothing": "eps added to every bin probability of both histograms, then renormalised",
            "note": "two disjoint distributions give about log(1/eps); the Gaussian closed form is reported too",
            "top_feature": int(order[0]),
            "top_feature_image_text": kl_it[order[0]],
            "top_feature_text_image": kl_ti[order[0]],
            "top_feature_gaussian": kl_g[order[0]],
        },
        "svm": {
            "model": f"sklearn LinearSVC (primal), features standardised, C = {svm_c:g}",
            "validation": f"stratified {folds}-fold cross-validation, shuffled (seed {int(p['seed'])}); "
            "accuracy is the mean held-out fold accuracy",
            "subsample": {mod: {"used": sample_sizes[mod], "of": rows[mod][0]} for mod in MODALITIES},
            "subsample_rule": f"at most svm_max_samples = {int(p['svm_max_samples'])} rows per modality, "
            f"drawn uniformly without replacement (seed {int(p['seed'])})",
            "top2": {
                "features": [int(f) for f in top2],
                **svm2,
                "boundary": {"w": w, "b": b, "training_accuracy": train_acc},
            },
            "random2_control": {
                "rule": f"{len(rand_pairs)} draws of 2 distinct features, uniform (seed [{int(p['seed'])}, 1]); "
                "same SVM and folds as top2",
                "features": [[int(f) for f in pr] for pr in rand_pairs],
                "accuracy": [float(a) for a in rand_acc],
                "mean_accuracy": float(np.mean(rand_acc)),
            },
            "paper_features": ({"features": paper_feats[:2], **pf_svm} if pf_svm else None),
            "all_features": svm_all,
        },
        "zero_norm_rows": {mod: accs[mod].n_zero for mod in MODALITIES},
        "histogram_clipped_values": {mod: hists[mod].n_clipped for mod in MODALITIES},
    }
    columns = {
        "feature": np.arange(sep.size),
        "sep": sep,
        "sep_rank": rank,
        "mean_image": ai.mean,
        "mean_text": at.mean,
        "std_image": ai.std,
        "std_text": at.std,
        "abs_mean_over_std_image": ms["image"],
        "abs_mean_over_std_text": ms["text"],
        "kl_image_text": kl_it,
        "kl_text_image": kl_ti,
        "kl_gaussian_image_text": kl_g,
        "kl_density_image_text": kl_dens,
        "is_tag": (sep > float(p["tag_threshold"])).astype(int),
    }
    nh = int(p["n_hist_features"])
    plot = {
        "sep": sep,
        "tag_threshold": float(p["tag_threshold"]),
        "mean_over_std": ms,
        "top_k": top_k,
        "hist_features": order[:nh],
        "hist_edges": hists["image"].edges[order[:nh]],
        "hist_counts": {mod: hists[mod].counts[order[:nh]] for mod in MODALITIES},
        "hist_kl": kl_g[order[:nh]],
        "tag_curve": {"threshold": grid, "n_tag_features": curve},
        "svm_x": x_all[:, top2],
        "svm_y": y,
        "svm_w": w,
        "svm_b": b,
        "svm_accuracy": svm2["accuracy"],
        "top2": top2,
    }
    return StageResult(summary, details, columns, plot)


def compute_thin_shell(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Prop. 2, Eqs. 1–4, Fig. 4, per modality on x̃ = v − m.

    Pass 1 (O(N·d)): mean, per-feature variance (tr C = Σ σ²), min/max and raw norms ‖v‖.
    Pass 2 (O(N·d)): centred norms ‖x̃‖ and histograms of the first ``n_features`` features of x̃.
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    nf = min(int(p["n_features"]), rows["image"][1])
    bins = int(p["hist_bins"])
    ddof = int(p["ddof"])
    summary, details, cols, plot = {}, {}, {"modality": [], "row": [], "norm_raw": [], "norm_centred": []}, {}
    for mod in MODALITIES:
        acc, _ = _moments(path, mod, chunk, keep_norms=True)
        m = acc.mean
        h = FeatureHistograms(acc.min[:nf] - m[:nf], acc.max[:nf] - m[:nf], bins)
        cn = []
        for x in iter_embedding_chunks(path, mod, chunk):
            xc = x - m
            cn.append(row_norms(xc))
            h.update(xc[:, :nf])
        cn = np.concatenate(cn)
        if h.n_clipped:
            log.warning("%s: %d value(s) outside the histogram range were put in the end bins", mod, h.n_clipped)
        trace_c = float(acc.var.sum())
        ts = thin_shell(cn, trace_c, ddof)
        raw = acc.norms
        log.info(
            "%s: mu_norm %.5g, var(y) %.5g, sqrt(tr C) %.5g, rel. error %.3g%%",
            mod,
            ts["mu_norm"],
            ts["var_y"],
            ts["rms_norm"],
            100 * ts["rel_error"],
        )
        summary[mod] = {k: ts[k] for k in ("mu_norm", "var_y", "rms_norm", "rel_error")}
        details[mod] = {
            "n": acc.n,
            **ts,
            "trace_cov": trace_c * acc.n / (acc.n - ddof) if acc.n > ddof else float("nan"),
            "trace_cov_population": trace_c,
            "rms_norm_from_norms": rms_norm_ddof(float(np.mean(cn * cn)), acc.n, ddof),
            "centred_norm": _quantiles(cn),
            "min_centred_norm_over_mu": float(cn.min() / ts["mu_norm"]) if ts["mu_norm"] > 0 else None,
            "raw": {
                "mean_norm": float(raw.mean()),
                "var_norm": float(raw.var()),
                "rms_norm": math.sqrt(trace_c + float(m @ m)),
                "mean_norm_vector": float(np.linalg.norm(m)),
                "quantiles": _quantiles(raw),
            },
        }
        cols["modality"].append(np.full(acc.n, mod, dtype=object))
        cols["row"].append(np.arange(acc.n))
        cols["norm_raw"].append(raw)
        cols["norm_centred"].append(cn)
        plot[mod] = {
            "norm_raw": raw,
            "norm_centred": cn,
            "feat_edges": h.edges,
            "feat_counts": h.counts,
            "mu_norm": ts["mu_norm"],
            "rms_norm": ts["rms_norm"],
        }
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    summary["ddof"] = ddof
    details["n_features_histogram"] = nf
    details["conventions"] = (
        f"ddof = {ddof} (thin_shell.ddof; 1 reproduces the paper's 7.6007): var_y = var(||x~||) "
        "with ddof; rms_norm = sqrt(tr C) = sqrt(E||x~||^2 * N / (N - ddof)); "
        "rel_error = (rms_norm - mu_norm) / rms_norm; mu_norm = E||x~|| and the mean m "
        "need no correction; identity_residual uses population moments"
    )
    plot["n_features"] = nf
    return StageResult(summary, details, cols, plot)


def compute_covariance(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """Props. 3–5, Eq. 6, Fig. 5 and the whitening of the supplementary, per modality.

    Pass 1 (O(N·d²), BLAS-bound): mean and full covariance C; Σ v̂ for the mean pairwise cosine.
    Then O(d³): eigen-decomposition.  Pass 2 (only with ``whiten``; O(N·d·k)): whitened vectors
    z = Λ^{-1/2} Uᵀ x̃, their norms (1 float/row) and Σ z², Σ z⁴ per principal axis (kurtosis).
    """
    log = log or _LOG
    rows = _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    d = rows["image"][1]
    summary, details, plot = {}, {}, {}
    cols = {"index": np.arange(d)}
    accs = {}
    for mod in MODALITIES:
        n_rows = rows[mod][0]
        reps = int(p.get("null_reps", 0))
        rng_s = np.random.default_rng(int(p.get("seed", 0)))
        m_null = min(n_rows, int(p.get("null_max_rows", 5000)))
        idx = np.sort(rng_s.choice(n_rows, m_null, replace=False)) if reps > 0 or p["whiten"] else None
        acc, sample = _moments(path, mod, chunk, full_cov=True, sample_idx=idx)
        _log_zero(acc, mod, log)
        accs[mod] = acc
        c = acc.cov
        var = np.diag(c).copy()
        odd = off_diagonal_dominance(c)
        lam_all, u_all = eigh_one_thread(c)  # O(d³), once for the spectrum and the whitening
        eig = np.clip(lam_all[::-1], 0.0, None)
        er, pr = effective_rank(eig), participation_ratio(eig)
        ratio = mean_to_std_ratio(acc.mean, var)
        cone = mean_pairwise_cosine(acc.sum_unit, acc.n_unit)
        det = {
            "n": acc.n,
            "trace_cov": float(var.sum()),
            "mean_norm": float(np.linalg.norm(acc.mean)),
            "std_norm": math.sqrt(float(var.sum())),
            "mean_to_std_ratio": ratio,
            "effective_rank": er,
            "participation_ratio": pr,
            "eigenvalues_top10": eig[:10],
            "explained_top10": float(eig[:10].sum() / eig.sum()) if eig.sum() > 0 else None,
            "variance": {
                **_quantiles(var),
                "max_over_median": float(var.max() / np.median(var)) if np.median(var) > 0 else None,
            },
            "odd": {**_quantiles(odd), "frac_ge_1": float(np.mean(odd >= 1.0))},
            "mean_pairwise_cosine": cone,
            "zero_norm_rows": acc.n_zero,
        }
        summary[mod] = {"mean_to_std_ratio": ratio, "effective_rank": er}
        if reps > 0:
            nulls = odd_null_medians(sample, reps, int(p.get("seed", 0)))
            summary[mod].update(odd_null_summary(nulls["observed"], nulls["permutation"], nulls["gaussian"]))
            summary[mod]["odd_null_estimator"] = ODD_NULL_ESTIMATOR
            det["odd_null"] = {**nulls, "rows": int(m_null)}
        log.info(
            "%s: ||m||/||sigma|| %.4g, effective rank %.4g (PR %.4g), ODD>=1 for %.1f%% of features, "
            "mean pairwise cosine %.4g",
            mod,
            ratio,
            er,
            pr,
            100 * det["odd"]["frac_ge_1"],
            cone,
        )
        plot[mod] = {"var": var, "odd": odd, "eig": eig, "effective_rank": er, "participation_ratio": pr}
        cols[f"variance_{mod}"] = var
        cols[f"odd_{mod}"] = odd
        cols[f"eigenvalue_{mod}"] = eig

        if p["whiten"]:
            w_mat, lam = whitening_from_eigh(lam_all, u_all, float(p["eig_rtol"]))
            k = lam.size
            if k < d:
                log.warning(
                    "%s: covariance has %d of %d directions above rtol %g; whitening keeps %d",
                    mod,
                    k,
                    d,
                    p["eig_rtol"],
                    k,
                )
            degenerate = acc.n <= d
            if degenerate:
                log.warning(
                    "%s: N = %d <= d = %d: the sample covariance is singular and every whitened "
                    "row has the same norm; the normality checks are not meaningful",
                    mod,
                    acc.n,
                    d,
                )
            s2, s4, zn = np.zeros(k), np.zeros(k), []
            w32 = np.ascontiguousarray(w_mat.T, dtype=np.float32)
            for x in iter_embedding_chunks(path, mod, chunk):
                # centred in float64, projected in float32 (half the time of the O(N·d·k) product;
                # z has unit variance, so float32 keeps ~7 digits), sums accumulated in float64
                z = ((x - acc.mean).astype(np.float32) @ w32).astype(np.float64)
                z *= z
                s2 += z.sum(axis=0)
                zn.append(np.sqrt(z.sum(axis=1)))
                z *= z
                s4 += z.sum(axis=0)
            zn = np.concatenate(zn)
            kurt = excess_kurtosis(s2 / acc.n, s4 / acc.n)
            ks = ks_chi(zn, k) if k > 0 else None
            ho = ks_chi_heldout(sample, int(p.get("seed", 0)), float(p["eig_rtol"]))
            det["whitening"] = {
                "method": "PCA whitening z = Lambda^-1/2 U^T (v - m), eigen-directions with "
                "lambda > eig_rtol * lambda_max",
                "kept_dims": int(k),
                "degenerate": bool(degenerate),
                "mean_norm": float(zn.mean()),
                "var_norm": float(zn.var()),
                "chi_mean": chi_mean(k) if k else None,
                "chi_var": float(k - chi_mean(k) ** 2) if k else None,
                "ks_statistic_vs_chi": ks[0] if ks else None,
                "ks_pvalue_vs_chi": ks[1] if ks else None,
                "ks_stat_heldout": ho[0] if ho else None,
                "ks_p_heldout": ho[1] if ho else None,
                "ks_calibration": "ks_p_heldout is the calibrated test (whitening fitted on a seeded random half of "
                "at most null_max_rows rows, the other half tested); ks_pvalue_vs_chi is "
                "in-sample and uncalibrated (too small even for exactly Gaussian data)",
                "excess_kurtosis": {**_quantiles(kurt), "mean_abs": float(np.mean(np.abs(kurt)))},
                "note": "for a multivariate normal ||z|| ~ chi(kept_dims) and every axis has excess kurtosis 0",
            }
            log.info(
                "%s whitened: mean ||z|| %.4g (chi mean %.4g), KS %.3g, median excess kurtosis %.3g",
                mod,
                zn.mean(),
                chi_mean(k) if k else float("nan"),
                ks[0] if ks else float("nan"),
                np.median(kurt),
            )
            plot[mod].update(whitened_norm=zn, kurtosis=kurt, kept_dims=k, degenerate=degenerate)
            kc = np.full(d, np.nan)
            kc[:k] = kurt
            cols[f"whitened_kurtosis_{mod}"] = kc
        details[mod] = det
    ai, at = accs["image"], accs["text"]
    angle = angle_deg(ai.mean, at.mean)
    summary["mean_angle_deg"] = angle
    details["mean_angle_deg"] = angle
    details["mean_gap_norm"] = float(np.linalg.norm(ai.mean - at.mean))
    details["mean_cross_cosine"] = mean_cross_cosine(ai.sum_unit, ai.n_unit, at.sum_unit, at.n_unit)
    details["definitions"] = {
        "covariance": "population covariance (ddof 0)",
        "odd": "Eq. 6: sum_{k != l} |C_lk| / C_ll",
        "effective_rank": "exp of the Shannon entropy of the normalised eigenvalues (Roy & Vetterli 2007)",
        "participation_ratio": "(sum lambda)^2 / sum lambda^2",
        "mean_to_std_ratio": "||m|| / ||sigma||, ||sigma|| = sqrt(tr C)",
        "mean_pairwise_cosine": "mean cos over pairs j != k of one modality, (||sum v^||^2 - N) / (N (N - 1))",
        "csv": "per-feature columns: variance_*, odd_*; per-rank columns (index = rank, largest first): "
        "eigenvalue_*, whitened_kurtosis_* (principal axis)",
    }
    log.info("angle between the modality means %.2f deg", angle)
    return StageResult(summary, details, cols, plot)


def compute_origin_distance(path, p: dict, log: logging.Logger | None = None) -> StageResult:
    """EuCLIP Fig. 2: per modality, ‖v‖ (distance from the origin, raw) and (1 − cos(v, [ROOT])) / 2.

    Pass 1 (O(N·d)): raw norms and Σ v̂ per modality → [ROOT].  Pass 2 (O(N·d)): cosine distances.
    """
    log = log or _LOG
    _check_rows(path, log)
    chunk = int(p["chunk_rows"])
    thr = float(p["near_root_threshold"])
    accs = {}
    for mod in MODALITIES:
        accs[mod], _ = _moments(path, mod, chunk, keep_norms=True)
        _log_zero(accs[mod], mod, log)
    ai, at = accs["image"], accs["text"]
    root = root_vector(ai.sum_unit, ai.n_unit, at.sum_unit, at.n_unit)
    summary = {"near_root_threshold": thr, "root_distance_form": ROOT_DISTANCE_FORM}
    details = {
        "root_norm": float(np.linalg.norm(root)),
        "definitions": {
            "origin_distance": "||v|| of the raw embedding",
            "root": "mean of all L2-normalised image and text embeddings together",
            "root_cosine_distance": ROOT_DISTANCE_FORM + " (EuCLIP Fig. 2's scaled cosine distance)",
            "frac_near_root": "fraction of rows with root_cosine_distance <= near_root_threshold",
        },
    }
    cols = {"modality": [], "row": [], "origin_distance": [], "root_cosine_distance": []}
    plot = {"near_root_threshold": thr}
    for mod in MODALITIES:
        acc = accs[mod]
        cd = np.concatenate([scaled_cosine_distance(x, root) for x in iter_embedding_chunks(path, mod, chunk)])
        norms = acc.norms
        ok = np.isfinite(cd)
        frac = float(np.mean(cd[ok] <= thr)) if ok.any() else float("nan")
        summary[mod] = {
            "median_origin_distance": float(np.median(norms)),
            "median_root_cosine_distance": float(np.median(cd[ok])) if ok.any() else float("nan"),
            "frac_near_root": frac,
        }
        details[mod] = {
            "n": acc.n,
            "origin_distance": _quantiles(norms),
            "root_cosine_distance": _quantiles(cd),
            "frac_near_root": frac,
            "zero_norm_rows": acc.n_zero,
        }
        log.info(
            "%s: median ||v|| %.4g, median cosine distance from ROOT %.4g, %.1f%% within %g",
            mod,
            summary[mod]["median_origin_distance"],
            summary[mod]["median_root_cosine_distance"],
            100 * frac,
            thr,
        )
        cols["modality"].append(np.full(acc.n, mod, dtype=object))
        cols["row"].append(np.arange(acc.n))
        cols["origin_distance"].append(norms)
        cols["root_cosine_distance"].append(cd)
        plot[mod] = {"origin_distance": norms, "root_cosine_distance": cd[ok]}
    cols = {k: np.concatenate(v) for k, v in cols.items()}
    return StageResult(summary, details, cols, plot)
