"""Rule conformity_compare: conformity of external sets (generated images, generated captions,
imported embeddings) measured against a reference dataset's modality sets, beside the reference's
own conformity (Fig. 13).  With no external sets it still writes the reference distributions."""

from clipgeom import conformity as cf
from clipgeom.h5io import check_rows_vary, count_rows, iter_embedding_chunks, read_embeddings
from clipgeom.outputs import save_figure, write_csv, write_metrics
from clipgeom.plots import conformity as pc
from clipgeom.scripting import get_job, setup_logging

MODS = ("image", "text")


def _paths(value):
    if value is None:
        return []
    if isinstance(value, str):  # by hand: --input external=a.h5,b.h5
        return [v for v in value.split(",") if v]
    return [str(v) for v in value]


def _names(value, n):
    if isinstance(value, str):
        value = [v for v in value.split(",") if v]
    return list(value) if value else [f"set{i}" for i in range(n)]


def main(job):
    log = setup_logging(job)
    check_rows_vary(job.input.reference, "conformity_compare")
    p = dict(job.params.p)
    demo = bool(job.params.demo)
    ref_path = job.input.reference
    ext_paths = _paths(job.input.get("external"))
    names = _names(job.params.get("sets"), len(ext_paths))
    if len(names) != len(ext_paths):
        raise ValueError(f"{len(names)} set names {names} for {len(ext_paths)} embeddings files {ext_paths}")
    ref_name = job.wildcards.get("dataset") or "reference"

    ref_meta = read_embeddings(ref_path, modalities=())
    ref_ids = {"image": ref_meta.image_id, "text": ref_meta.text_id}
    ref_sums, ref_conf, ref_dim = {}, {}, {}
    for mod in MODS:
        n, d = count_rows(ref_path, mod)
        if n < 2:
            log.warning("reference %s has %d %s row(s); its %s conformity is skipped", ref_name, n, mod, mod)
            continue
        src = lambda mod=mod: iter_embedding_chunks(ref_path, mod, p["chunk_rows"])  # noqa: E731
        ref_conf[mod], _, ref_sums[mod] = cf.conformity_and_cosine(src)
        ref_dim[mod] = d
        log.info("reference %s %s: N=%d mean C=%.4f", ref_name, mod, n, ref_conf[mod].mean())

    rows = {"set": [], "modality": [], "id": [], "conformity": []}
    for mod, c in ref_conf.items():
        rows["set"] += [ref_name] * len(c)
        rows["modality"] += [mod] * len(c)
        rows["id"] += list(ref_ids[mod])
        rows["conformity"] += c.tolist()

    sets, set_values = {}, {}
    if not ext_paths:
        log.info("no external sets reference %s: writing the reference distributions only", ref_name)
    for name, path in zip(names, ext_paths, strict=False):
        meta = read_embeddings(path, modalities=())
        ext_ids = {"image": meta.image_id, "text": meta.text_id}
        sets[name], set_values[name] = {}, {}
        for mod in MODS:
            n, d = count_rows(path, mod)
            if n == 0:
                continue
            if mod not in ref_sums:
                log.warning("set %s has %d %s rows but the reference has no %s set: skipped", name, n, mod, mod)
                sets[name][mod] = {"n": n, "skipped": f"reference {ref_name} has no {mod} rows"}
                continue
            if d != ref_dim[mod]:
                raise ValueError(
                    f"{path}: {mod} embeddings have width {d} but the reference "
                    f"{ref_path} has width {ref_dim[mod]}; they come from different models"
                )
            src = lambda path=path, mod=mod: iter_embedding_chunks(path, mod, p["chunk_rows"])  # noqa: E731
            c = cf.conformity_against(src, ref_sums[mod])
            set_values[name][mod] = c
            ref_mean = float(ref_conf[mod].mean())
            sets[name][mod] = {
                "n": n,
                "mean": float(c.mean()),
                "std": float(c.std()),
                "diff_from_reference": float(c.mean()) - ref_mean,
            }
            log.info(
                "set %s %s: N=%d mean C=%.4f (reference %.4f, diff %+.4f)",
                name,
                mod,
                n,
                c.mean(),
                ref_mean,
                c.mean() - ref_mean,
            )
            rows["set"] += [name] * n
            rows["modality"] += [mod] * n
            rows["id"] += list(ext_ids[mod])
            rows["conformity"] += c.tolist()

    write_csv(job.output.values, rows)
    save_figure(
        pc.compare_distributions(
            ref_name, ref_conf, set_values, p["bins"], label=f"({job.wildcards.dataset} × {job.wildcards.model})"
        ),
        job.output.compare_png,
        job.output.compare_pdf,
        demo=demo,
    )
    summary = {
        "n_sets": len(ext_paths),
        "reference": {
            mod: {"n": len(c), "mean": float(c.mean()), "std": float(c.std())} for mod, c in ref_conf.items()
        },
        "sets": sets,
    }
    details = {
        "method": (
            "external vectors a scored against the reference modality set B: "
            "C_B(a) = mean_k cos(a, b_k) = â·Σ_k b̂_k / N_B (Eq. 10 with B's unit-vector sum); "
            "the reference's own values are Eq. 10 within B (leave-one-out)"
        ),
        "external_files": dict(zip(names, ext_paths, strict=False)),
    }
    if not ext_paths:
        summary["note"] = f"no external sets reference {ref_name}; reference distributions only"
    write_metrics(
        job.output.metrics,
        stage="conformity_compare",
        summary=summary,
        details=details,
        dataset=job.wildcards.get("dataset"),
        model=job.wildcards.get("model"),
        demo=demo,
        params=p,
    )


main(get_job(__file__))
