"""Rule kl_matching: image and text conformity distributions on shared bins (Fig. 10) and the
KL divergence between them as the image embeddings shift by −α·m_i (Eq. 9; Fig. 11)."""

import numpy as np

from clipgeom import conformity as cf
from clipgeom.grids import alpha_grid
from clipgeom.h5io import check_rows_vary, count_rows, iter_embedding_chunks
from clipgeom.kl import histogram_probs, sample_histogram_kl, shared_bins
from clipgeom.outputs import save_figure, write_csv, write_metrics
from clipgeom.plots import conformity as pc
from clipgeom.progress import Progress
from clipgeom.scripting import get_job, log_stream, setup_logging


def main(job):
    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "kl_matching")
    p = dict(job.params.p)
    demo = bool(job.params.demo)
    path = job.input.embeddings
    alphas = alpha_grid(p["alpha_min"], p["alpha_max"], p["alpha_step"], include_zero=False)
    estimator = {
        "divergence": "KL(image || text) = sum_b p_image(b) * ln(p_image(b) / p_text(b)), in nats",
        "bins": p["bins"],
        "binning": "equal-width bins shared by both samples, spanning the union of their ranges, "
        "recomputed for every alpha",
        "smoothing": "pseudocount added to every bin of both histograms before normalising",
        "pseudocount": p["pseudocount"],
        "shift": "image embeddings v_i - alpha * m_i with m_i the raw image mean (Eq. 9); text unchanged",
    }
    src = {mod: (lambda mod=mod: iter_embedding_chunks(path, mod, p["chunk_rows"])) for mod in ("image", "text")}
    counts = {mod: count_rows(path, mod)[0] for mod in ("image", "text")}
    wc = {"dataset": job.wildcards.get("dataset"), "model": job.wildcards.get("model")}
    short = [mod for mod, n in counts.items() if n < 2]
    if short:
        msg = f"conformity needs at least 2 rows per modality; too few in {short} ({counts})"
        log.warning("%s: KL matching skipped", msg)
        write_csv(
            job.output.values,
            {
                "alpha": [],
                "kl_image_text": [],
                "image_mean_conformity": [],
                "image_std_conformity": [],
                "text_mean_conformity": [],
            },
        )
        import matplotlib.pyplot as plt

        for png, pdf in ((job.output.dist_png, job.output.dist_pdf), (job.output.curve_png, job.output.curve_pdf)):
            fig, ax = plt.subplots(figsize=(5, 2))
            ax.axis("off")
            ax.text(0.5, 0.5, msg, ha="center", va="center", wrap=True, fontsize=8)
            save_figure(fig, png, pdf, demo=demo)
        write_metrics(
            job.output.metrics,
            stage="kl_matching",
            summary={"kl_at_zero": None, "argmin_alpha": None, "min_kl": None},
            details={"skipped": msg, "estimator": estimator, "n": counts},
            demo=demo,
            params=p,
            **wc,
        )
        return

    # rows read: two passes for the text conformity, two for the image's, two for the shifted image sets
    bar = Progress(2 * counts["text"] + 4 * counts["image"], "kl_matching: rows read", "rows", log_stream(job))
    src = {mod: (lambda f=f: bar.iterate(f())) for mod, f in src.items()}
    text_conf = cf.conformity(src["text"])
    image_conf, _, image_sums = cf.conformity_and_cosine(src["image"])
    m_i = image_sums.mean
    log.info(
        "image N=%d, text N=%d; %d alphas from %g to %g",
        counts["image"],
        counts["text"],
        len(alphas),
        alphas[0],
        alphas[-1],
    )
    image_by_alpha = cf.shifted_conformity(src["image"], alphas, m_i)
    bar.close()
    kl = cf.kl_curve(image_by_alpha, text_conf, p["bins"], p["pseudocount"])
    kl_zero = sample_histogram_kl(image_conf, text_conf, p["bins"], p["pseudocount"])
    best = int(np.argmin(kl))
    for a, k in zip(alphas, kl, strict=False):
        log.info("alpha=%+.2f  KL(image||text)=%.4f", a, k)
    if 0.0 in alphas:
        dev = float(np.max(np.abs(image_by_alpha[list(alphas).index(0.0)] - image_conf)))
        log.info("alpha=0 reproduces the unshifted conformity to %.2e", dev)

    write_csv(
        job.output.values,
        {
            "alpha": alphas,
            "kl_image_text": kl,
            "image_mean_conformity": image_by_alpha.mean(axis=1),
            "image_std_conformity": image_by_alpha.std(axis=1),
            "text_mean_conformity": [float(text_conf.mean())] * len(alphas),
        },
    )
    edges = shared_bins(image_conf, text_conf, bins=p["bins"])
    label = f"({wc['dataset']} × {wc['model']})" if wc["dataset"] else ""
    save_figure(
        pc.distributions(image_conf, text_conf, edges, kl_zero, label=label),
        job.output.dist_png,
        job.output.dist_pdf,
        demo=demo,
    )
    save_figure(
        pc.kl_curve(alphas, kl, float(alphas[best]), label=label), job.output.curve_png, job.output.curve_pdf, demo=demo
    )
    summary = {"kl_at_zero": kl_zero, "argmin_alpha": float(alphas[best]), "min_kl": float(kl[best])}
    details = {
        "estimator": estimator,
        "n": counts,
        "alphas": alphas,
        "kl": kl,
        "image_conformity": {"mean": float(image_conf.mean()), "std": float(image_conf.std())},
        "text_conformity": {"mean": float(text_conf.mean()), "std": float(text_conf.std())},
        "histograms_at_zero": {
            "edges": edges,
            "image": histogram_probs(image_conf, edges, p["pseudocount"]),
            "text": histogram_probs(text_conf, edges, p["pseudocount"]),
        },
    }
    log.info("KL at alpha=0: %.4f; lowest %.4f at alpha=%g", kl_zero, kl[best], alphas[best])
    write_metrics(job.output.metrics, stage="kl_matching", summary=summary, details=details, demo=demo, params=p, **wc)


main(get_job(__file__))
