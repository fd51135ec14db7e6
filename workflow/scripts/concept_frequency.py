"""Rule concept_frequency: Prediction 1 (paper §6) — Spearman ρ of each concept's training frequency (or a
word-frequency proxy) with conformity (Eq. 10) and cos(m, v), its bootstrap CI and permutation null
(computation in clipgeom.stages.frequency.compute_concept_frequency)."""

from clipgeom.scripting import get_job, setup_logging


def main(job):
    from clipgeom.outputs import save_figure, write_csv, write_metrics
    from clipgeom.plots.frequency import plot_concept_frequency
    from clipgeom.stages.frequency import compute_concept_frequency

    log = setup_logging(job)
    p, demo = dict(job.params.p), bool(job.params.demo)
    dataset, model = getattr(job.wildcards, "dataset", None), getattr(job.wildcards, "model", None)
    corpus = job.input.get("corpus")  # the proxy's corpus file; none given: the dataset's own captions
    if corpus is not None and not isinstance(corpus, str):
        corpus = str(corpus[0]) if len(corpus) else None
    res = compute_concept_frequency(job.input.embeddings, p, corpus, log)
    out = job.output
    write_metrics(
        out.metrics,
        stage="concept_frequency",
        summary=res.summary,
        details=res.details,
        dataset=dataset,
        model=model,
        demo=demo,
        params=p,
    )
    write_csv(out.concepts, res.concepts)
    write_csv(out.samples, res.samples)
    label = f"({dataset} × {model})" if dataset else ""
    fig = plot_concept_frequency(
        res.plot, res.source, label, bins=int(p["proxy_bins"]), max_points=int(p["max_points"]), seed=int(p["seed"])
    )
    save_figure(fig, out.figure_png, out.figure_pdf, demo=demo)
    log.info("wrote %s (source: %s)", out.metrics, res.source)


if __name__ == "__main__":
    main(get_job(__file__))
