"""Train a small open_clip model on a synthetic world; write its checkpoint (weights only), metrics and curve."""

from clipgeom.scripting import get_job, setup_logging


def main(job):
    import torch

    from clipgeom.atomic import atomic_path
    from clipgeom.outputs import save_figure, write_csv, write_json
    from clipgeom.plots.train import plot_training
    from clipgeom.train import train_clip

    log = setup_logging(job)
    t = dict(job.params.train)
    # train.threads, not the job's: float sums depend on the thread count, and the same seed must give the same
    # weights whatever --cores a run was given (Snakemake scales a job's threads down to --cores)
    from clipgeom.threads import confine

    confine(int(t["threads"]))
    device = job.params.device
    if device == "auto":
        from clipgeom.embed import resolve_device

        device = resolve_device("auto")
    model, res = train_clip(
        job.params.arch,
        job.params.model_config,
        dict(job.params.world),
        steps=t["steps"],
        batch_size=t["batch_size"],
        lr=t["lr"],
        weight_decay=t["weight_decay"],
        warmup=t["warmup"],
        logits=t["logits"],
        logit_scale=t["logit_scale"],
        sampling=t["sampling"],
        n_train=t["n_train"],
        n_eval=t["n_eval"],
        seed=t["seed"],
        device=device,
    )
    with atomic_path(job.output.checkpoint) as tmp:
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, tmp)
    res.metrics["threads"] = job.threads
    res.metrics["device"] = device
    write_json(job.output.metrics, res.metrics)
    write_csv(job.output.curve, res.curve)
    save_figure(
        plot_training(res.curve, res.metrics, label=f"{job.rule.removeprefix('train_model_')}"),
        job.output.png,
        job.output.pdf,
    )
    log.info("wrote %s", job.output.checkpoint)


main(get_job(__file__))
