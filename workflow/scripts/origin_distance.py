"""Rule origin_distance: EuCLIP Fig. 2 (computation in clipgeom.stages.geometry.compute_origin_distance)."""

from clipgeom.h5io import check_rows_vary
from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import geometry as gp
    from clipgeom.stages.geometry import compute_origin_distance

    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "origin_distance")
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    res = compute_origin_distance(job.input.embeddings, p, log)
    out = job.output
    write_metrics(
        out.metrics,
        stage="origin_distance",
        summary=res.summary,
        details=res.details,
        dataset=dataset,
        model=model,
        demo=demo,
        params=p,
    )
    write_csv(out.values, res.columns)  # numpy columns: written row by row, no per-cell list copies
    label = f"({dataset} × {model})" if dataset else ""
    r, bins = res.plot, int(p["hist_bins"])
    save_figure(gp.plot_origin_distance(r, bins, label), out.origin_png, out.origin_pdf, demo=demo)
    save_figure(gp.plot_root_distance(r, r["near_root_threshold"], bins, label), out.root_png, out.root_pdf, demo=demo)
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
