"""Rule blur_simulation: the Fig. 7 simulation (computation in clipgeom.blur.blur_simulation)."""

from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.blur import blur_simulation, blur_summary
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots import loss as lp

    log = setup_logging(job)
    p = dict(job.params.p)
    res = blur_simulation(n=int(p["n"]), dim=int(p["dim"]), centre=p["centre"], seed=int(p["seed"]))
    summary = blur_summary(res)
    for name, s in summary.items():
        log.info(
            "%s: cos(m, v) %.4f ± %.4f, cos(v_far, v) %.4f ± %.4f",
            name,
            s["cos_mean"]["mean"],
            s["cos_mean"]["std"],
            s["cos_far"]["mean"],
            s["cos_far"]["std"],
        )
    details = {
        "settings": {name: s.stats() for name, s in res.items()},
        "definitions": {
            "cos_mean": "cos(m, v_j) over all j, m the empirical mean of the set",
            "cos_far": "cos(v_far, v_j) over j != far, v_far = argmin_j cos(m, v_j)",
        },
    }
    out = job.output
    write_metrics(out.metrics, stage="blur_simulation", summary=summary, details=details, params=p)
    cols = {"setting": [], "quantity": [], "index": [], "cosine": []}
    for name, s in res.items():
        idx_far = [j for j in range(len(s.vectors)) if j != s.far_index]
        for q, vals, idx in (("cos_mean", s.cos_mean, range(len(s.vectors))), ("cos_far", s.cos_far, idx_far)):
            cols["setting"] += [name] * len(vals)
            cols["quantity"] += [q] * len(vals)
            cols["index"] += list(idx)
            cols["cosine"] += vals.tolist()
    write_csv(out.values, cols)
    save_figure(lp.plot_blur(res, bins=int(p["bins"])), out.hist_png, out.hist_pdf)
    log.info("wrote %s", out.metrics)


if __name__ == "__main__":
    main(get_job(__file__))
