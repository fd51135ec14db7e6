"""Rule conformity: exact (Eq. 10) and estimated (Eq. 11) conformity of every image and caption
within its own modality; the scatter C vs Ĉ (Fig. 9) and the most/least conforming examples (Fig. 8).

Streams the embeddings in two passes (unit-vector sum, then per-chunk values).
"""

import numpy as np

from clipgeom import conformity as cf
from clipgeom.h5io import check_rows_vary, count_rows, iter_embedding_chunks, read_embeddings
from clipgeom.outputs import save_figure, write_csv, write_metrics
from clipgeom.plots import conformity as pc
from clipgeom.progress import Progress
from clipgeom.scripting import get_job, log_stream, setup_logging

EMPTY = {
    "pearson": None,
    "a": None,
    "b": None,
    "mean": None,
    "std": None,
    "inverse_a": None,
    "inverse_b": None,
    "unit_mean_norm": None,
    "angle_mean_to_unit_mean_deg": None,
    "identity_a": None,
    "identity_b": None,
}


def main(job):
    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "conformity")
    p = dict(job.params.p)
    demo = bool(job.params.demo)
    images = job.params.get("images")
    path = job.input.embeddings
    meta = read_embeddings(path, modalities=())  # ids, file names and captions only
    ids = {"image": meta.image_id, "text": meta.text_id}
    labels = {"image": meta.image_file, "text": meta.caption}

    summary, details, panels, columns, extremes = {}, {"modalities": {}}, {}, {}, {}
    rows = {
        "id": [],
        "modality": [],
        "label": [],
        "exact_conformity": [],
        "estimated_conformity": [],
        "cos_to_mean": [],
    }
    shapes = {mod: count_rows(path, mod) for mod in ("image", "text")}
    bar = Progress(  # two streamed passes per modality (Eq. 10 needs the unit-vector sum first)
        2 * sum(n for n, _ in shapes.values() if n >= 2), "conformity: rows read", "rows", log_stream(job)
    )
    for mod in ("image", "text"):
        n, d = shapes[mod]
        if n < 2:
            log.warning("%s: %d row(s); conformity needs at least 2, skipped", mod, n)
            summary[mod] = dict(EMPTY)
            details["modalities"][mod] = {"n": n, "skipped": "fewer than 2 rows"}
            continue
        src = lambda mod=mod: bar.iterate(iter_embedding_chunks(path, mod, p["chunk_rows"]))  # noqa: E731
        conf, cos_m, sums = cf.conformity_and_cosine(src)
        fit = cf.fit_estimated_conformity(conf, cos_m)
        est = fit.predict(cos_m)
        inv = cf.fit_estimated_conformity(cos_m, conf)  # cos(m, v) ≈ a'·C + b', for comparison only
        log.info(
            "%s: N=%d d=%d  Pearson(C, Ĉ)=%.9f  a=%.4f  b=%+.5f  mean C=%.4f  std C=%.4f",
            mod,
            n,
            d,
            fit.pearson,
            fit.a,
            fit.b,
            conf.mean(),
            conf.std(),
        )
        summary[mod] = {
            "pearson": fit.pearson,
            "a": fit.a,
            "b": fit.b,
            "mean": float(conf.mean()),
            "std": float(conf.std()),
            # the reverse regression cos(m, v) = a'C + b', which the paper's a, b resemble
            "inverse_a": inv.a,
            "inverse_b": inv.b,
            # the exact unit-row identity behind r ≈ 1 (see clipgeom.conformity.unit_row_identity)
            **cf.unit_row_identity(sums.unit_mean, sums.mean, n),
        }
        details["modalities"][mod] = {
            "n": n,
            "dim": d,
            "unit_mean_norm": float(np.linalg.norm(sums.unit_mean)),
            "raw_mean_norm": float(np.linalg.norm(sums.mean)),
            "max_abs_residual": float(np.max(np.abs(conf - est))),
            "inverse_fit": {
                "a": inv.a,
                "b": inv.b,
                "meaning": "least squares of cos(m, v) = a*C + b (the reverse regression)",
            },
        }
        order = np.argsort(-conf, kind="stable")
        k = min(p["n_examples"], n)
        extremes[mod] = {"most": order[:k].tolist(), "least": order[::-1][:k].tolist()}
        details["modalities"][mod]["most_conforming"] = [
            {"id": ids[mod][i], "label": labels[mod][i], "conformity": float(conf[i])} for i in order[:k]
        ]
        details["modalities"][mod]["least_conforming"] = [
            {"id": ids[mod][i], "label": labels[mod][i], "conformity": float(conf[i])} for i in order[::-1][:k]
        ]
        columns[mod] = (conf, est, cos_m)
        rows["id"] += list(ids[mod])
        rows["modality"] += [mod] * n
        rows["label"] += list(labels[mod])
        rows["exact_conformity"] += conf.tolist()
        rows["estimated_conformity"] += est.tolist()
        rows["cos_to_mean"] += cos_m.tolist()
        draw = np.arange(n)
        if n > p["scatter_max_points"]:
            draw = np.sort(np.random.default_rng(p["seed"]).choice(n, p["scatter_max_points"], replace=False))
            log.info("%s: scatter draws a seeded subsample of %d of %d points (the fit uses all)", mod, len(draw), n)
        panels[mod] = {
            "estimated": est[draw],
            "exact": conf[draw],
            "a": fit.a,
            "b": fit.b,
            "pearson": fit.pearson,
            "n": n,
        }
    bar.close()

    write_csv(job.output.values, rows)
    dataset, model = job.wildcards.get("dataset"), job.wildcards.get("model")
    label = f"({dataset} × {model})" if dataset else ""
    save_figure(pc.scatter_exact_vs_estimated(panels, label), job.output.scatter_png, job.output.scatter_pdf, demo=demo)

    def items(mod, which, thumbs=None):
        if mod not in extremes:
            return []
        conf = columns[mod][0]
        return [
            {"label": labels[mod][i], "value": float(conf[i]), "thumb": thumbs[j] if thumbs else None}
            for j, i in enumerate(extremes[mod][which])
        ]

    if "image" in extremes:
        most_files = [labels["image"][i] for i in extremes["image"]["most"]]
        least_files = [labels["image"][i] for i in extremes["image"]["least"]]
        thumbs = pc.load_thumbnails(images, most_files + least_files, p["thumbnail_size"], log)
        k = len(most_files)
        most_img, least_img = items("image", "most", thumbs[:k]), items("image", "least", thumbs[k:])
        details["thumbnails"] = {
            "source": images,
            "loaded": sum(t is not None for t in thumbs),
            "requested": len(thumbs),
        }
    else:
        most_img, least_img = [], []
    save_figure(pc.extremes_images(most_img, least_img, label), job.output.images_png, job.output.images_pdf, demo=demo)
    save_figure(
        pc.extremes_captions(items("text", "most"), items("text", "least"), label),
        job.output.captions_png,
        job.output.captions_pdf,
        demo=demo,
    )

    details["method"] = (
        "C(v_j) = v̂_j·(Σ_k v̂_k − v̂_j)/(N−1) within the modality (Eq. 10, O(N·d), two streamed "
        "passes); Ĉ = a·cos(m, v_j) + b with m the raw modality mean, a and b by least "
        "squares (Eq. 11)"
    )
    write_metrics(
        job.output.metrics,
        stage="conformity",
        summary=summary,
        details=details,
        dataset=job.wildcards.get("dataset"),
        model=job.wildcards.get("model"),
        demo=demo,
        params=p,
    )


main(get_job(__file__))
