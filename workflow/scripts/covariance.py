"""Rule covariance: Props. 3-5, Eq. 6, Fig. 5 and whitening (computation in
clipgeom.stages.geometry.compute_covariance)."""

from clipgeom.h5io import check_rows_vary
from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import geometry as gp
    from clipgeom.stages.geometry import compute_covariance

    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "covariance")
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    res = compute_covariance(job.input.embeddings, p, log)
    out = job.output
    write_metrics(
        out.metrics,
        stage="covariance",
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
    save_figure(gp.plot_variance_hist(r, bins, label), out.variance_png, out.variance_pdf, demo=demo)
    save_figure(gp.plot_odd_hist(r, bins, label), out.odd_png, out.odd_pdf, demo=demo)
    save_figure(gp.plot_eigen_spectrum(r, label), out.spectrum_png, out.spectrum_pdf, demo=demo)
    if p["whiten"]:
        fig = gp.plot_whitening(r, bins, label)
    else:
        log.info("whitening disabled (stages.covariance.whiten: false): writing a placeholder figure")
        fig = gp.placeholder("whitening disabled (stages.covariance.whiten: false)")
    save_figure(fig, out.whitening_png, out.whitening_pdf, demo=demo)
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
