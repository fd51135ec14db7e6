"""Rule thin_shell: Prop. 2, Eqs. 1-4, Fig. 4 (computation in clipgeom.stages.geometry.compute_thin_shell)."""

from clipgeom.h5io import check_rows_vary
from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import geometry as gp
    from clipgeom.stages.geometry import compute_thin_shell

    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "thin_shell")
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    res = compute_thin_shell(job.input.embeddings, p, log)
    out = job.output
    write_metrics(
        out.metrics,
        stage="thin_shell",
        summary=res.summary,
        details=res.details,
        dataset=dataset,
        model=model,
        demo=demo,
        params=p,
    )
    write_csv(out.values, res.columns)  # numpy columns: written row by row, no per-cell list copies
    label = f"({dataset} × {model})" if dataset else ""
    r = res.plot
    save_figure(gp.plot_centred_features(r, r["n_features"], label), out.features_png, out.features_pdf, demo=demo)
    save_figure(gp.plot_norms(r, int(p["hist_bins"]), label), out.norms_png, out.norms_pdf, demo=demo)
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
