"""Rule separability: Prop. 1, Eq. 5, Figs 2-3 (computation in clipgeom.stages.geometry.compute_separability)."""

from clipgeom.h5io import check_rows_vary
from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import geometry as gp
    from clipgeom.stages.geometry import compute_separability

    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "separability")
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    res = compute_separability(job.input.embeddings, p, log)
    out = job.output
    write_metrics(
        out.metrics,
        stage="separability",
        summary=res.summary,
        details=res.details,
        dataset=dataset,
        model=model,
        demo=demo,
        params=p,
    )
    write_csv(out.values, res.columns)  # numpy columns: written row by row, no per-cell list copies
    tc = res.plot["tag_curve"]
    write_csv(out.curve, {"threshold": tc["threshold"], "n_tag_features": tc["n_tag_features"]})
    label = f"({dataset} × {model})" if dataset else ""
    r = res.plot
    save_figure(gp.plot_sep_sorted(r["sep"], r["tag_threshold"], label), out.sorted_png, out.sorted_pdf, demo=demo)
    save_figure(
        gp.plot_top_mean_std(r["mean_over_std"], r["top_k"], label), out.mean_std_png, out.mean_std_pdf, demo=demo
    )
    save_figure(
        gp.plot_top_feature_histograms(r["hist_features"], r["hist_edges"], r["hist_counts"], r["hist_kl"], label),
        out.hist_png,
        out.hist_pdf,
        demo=demo,
    )
    save_figure(
        gp.plot_svm_top2(
            r["svm_x"], r["svm_y"], r["top2"], r["svm_w"], r["svm_b"], r["svm_accuracy"], label, seed=int(p["seed"])
        ),
        out.svm_png,
        out.svm_pdf,
        demo=demo,
    )
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
