"""Rule alpha_sweep: the CLIP loss under a mean shift, Eqs. 7-9, Fig. 6 and its text-shift and Euclidean
variants (computation in clipgeom.stages.loss.compute_alpha_sweep)."""

from clipgeom.h5io import check_rows_vary
from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.loss import GEOMETRIES, SHIFTS
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import loss as lp
    from clipgeom.stages.loss import compute_alpha_sweep

    log = setup_logging(job)
    check_rows_vary(job.input.embeddings, "alpha_sweep")
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    res = compute_alpha_sweep(job.input.embeddings, p, log, threads=int(job.threads or 1))
    out = job.output
    write_metrics(
        out.metrics,
        stage="alpha_sweep",
        summary=res.summary,
        details=res.details,
        dataset=dataset,
        model=model,
        demo=demo,
        params=p,
    )
    write_csv(out.curves, res.columns)
    label = f"({dataset} × {model})" if dataset else ""
    cosine = {s: res.curves[("cosine", s)] for s in SHIFTS if ("cosine", s) in res.curves}
    save_figure(
        lp.plot_loss_curves(res.alphas, cosine, SHIFTS, label, scale=res.scale), out.loss_png, out.loss_pdf, demo=demo
    )
    geometries = [g for g in GEOMETRIES if g in res.details["geometries"]]
    save_figure(
        lp.plot_geometry_curves(res.alphas, res.curves, geometries, SHIFTS, label, scale=res.scale),
        out.geometry_png,
        out.geometry_pdf,
        demo=demo,
    )
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
