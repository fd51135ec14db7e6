"""Rule vslerp: vertical SLERP paths between image embeddings (Eq. 12; Fig. 12).

No image decoder here: each point is shown by its nearest real images (cosine among all images
of the dataset), and the cosine to the image mean and the norm are reported along every path."""

import numpy as np

from clipgeom import vslerp as vs
from clipgeom.h5io import check_rows_vary, read_embeddings
from clipgeom.outputs import save_figure, write_csv, write_metrics
from clipgeom.plots import conformity as pc
from clipgeom.scripting import get_job, setup_logging


def main(job):
    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "vslerp")
    p = dict(job.params.p)
    demo = bool(job.params.demo)
    images = job.params.get("images")
    emb = read_embeddings(job.input.embeddings, modalities=("image",))
    V = emb.image.astype(np.float64)
    ids = emb.image_id
    files = emb.image_file
    m = V.mean(axis=0)
    pairs, how = vs.resolve_pairs(ids, p["pairs"], p["n_random_pairs"], p["seed"])
    log.info("%d pair(s), %s; alphas %s; %d steps", len(pairs), how, p["alphas"], p["steps"])
    theta = vs.path_fractions(p["steps"])
    k = int(p["neighbours"])

    rows = {"pair": [], "id_a": [], "id_b": [], "alpha": [], "step": [], "theta": [], "cos_to_mean": [], "norm": []}
    for j in range(k):
        rows[f"nearest_{j + 1}_id"] = []
        rows[f"nearest_{j + 1}_cos"] = []
    paths, grid, needed = [], [], set()
    endpoint_err = 0.0
    for pi, (ra, rb) in enumerate(pairs):
        for alpha in p["alphas"]:
            pts = vs.vslerp(V[ra], V[rb], theta, float(alpha), m)
            endpoint_err = max(
                endpoint_err, float(np.max(np.abs(pts[0] - V[ra]))), float(np.max(np.abs(pts[-1] - V[rb])))
            )
            cos_m = vs.cosine_to_mean(pts, m)
            norm = np.linalg.norm(pts, axis=1)
            nn_idx, nn_cos = vs.nearest_rows(pts, V, k)
            paths.append({"pair": pi, "alpha": float(alpha), "theta": theta, "cos_to_mean": cos_m, "norm": norm})
            rows["pair"] += [pi] * len(theta)
            rows["id_a"] += [ids[ra]] * len(theta)
            rows["id_b"] += [ids[rb]] * len(theta)
            rows["alpha"] += [float(alpha)] * len(theta)
            rows["step"] += list(range(len(theta)))
            rows["theta"] += theta.tolist()
            rows["cos_to_mean"] += cos_m.tolist()
            rows["norm"] += norm.tolist()
            for j in range(nn_idx.shape[1]):
                rows[f"nearest_{j + 1}_id"] += [ids[i] for i in nn_idx[:, j]]
                rows[f"nearest_{j + 1}_cos"] += nn_cos[:, j].tolist()
            grid.append(
                {
                    "title": f"pair {pi}: {ids[ra]}→{ids[rb]}\nα = {float(alpha):g}",
                    "nn": nn_idx[:, 0],
                    "cos": nn_cos[:, 0],
                }
            )
            needed.update(nn_idx[:, 0].tolist())
    log.info("endpoints reproduce the inputs to %.2e", endpoint_err)

    needed = sorted(needed)
    thumbs = dict(
        zip(needed, pc.load_thumbnails(images, [files[i] for i in needed], p["thumbnail_size"], log), strict=False)
    )
    fig_rows = [
        {
            "title": g["title"],
            "tiles": [
                {"thumb": thumbs[i], "label": files[i] or str(ids[i]), "value_text": f"{ids[i]}\ncos {c:.3f}"}
                for i, c in zip(g["nn"], g["cos"], strict=False)
            ],
        }
        for g in grid
    ]
    write_csv(job.output.values, rows)
    label = f"({job.wildcards.dataset} × {job.wildcards.model})"
    save_figure(
        pc.vslerp_neighbours(fig_rows, len(theta), label=label), job.output.paths_png, job.output.paths_pdf, demo=demo
    )
    save_figure(pc.vslerp_stats(paths, label=label), job.output.stats_png, job.output.stats_pdf, demo=demo)

    mid = len(theta) // 2
    by_alpha = {}
    for alpha in p["alphas"]:
        sel = [q for q in paths if q["alpha"] == float(alpha)]
        by_alpha[f"{float(alpha):g}"] = {
            "midpoint_cos_to_mean": float(np.mean([q["cos_to_mean"][mid] for q in sel])),
            "midpoint_norm": float(np.mean([q["norm"][mid] for q in sel])),
        }
    summary = {"n_pairs": len(pairs), "pairs_from": how, "steps": len(theta), "by_alpha": by_alpha}
    details = {
        "method": "vSLERP(v_j, v_k, θ, α) = SLERP(v_j − α m, v_k − α m, θ) + α m (Eq. 12), m the raw image mean; "
        "points shown by their cosine-nearest real images",
        "pairs": [
            {"pair": i, "id_a": ids[a], "id_b": ids[b], "file_a": files[a], "file_b": files[b]}
            for i, (a, b) in enumerate(pairs)
        ],
        "image_mean_norm": float(np.linalg.norm(m)),
        "endpoint_max_abs_error": endpoint_err,
        "thumbnails": {
            "source": images,
            "loaded": sum(t is not None for t in thumbs.values()),
            "requested": len(thumbs),
        },
    }
    write_metrics(
        job.output.metrics,
        stage="vslerp",
        summary=summary,
        details=details,
        dataset=job.wildcards.get("dataset"),
        model=job.wildcards.get("model"),
        demo=demo,
        params=p,
    )


main(get_job(__file__))
