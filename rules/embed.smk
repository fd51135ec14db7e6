# Manifest -> raw CLIP embeddings: scatter over shards (GPU jobs), gather into embeddings.h5.


scattergather:
    split=config["embedding"]["shards"],


for _m, _c in MODELS.items():
    if _c["init_seed"] is not None and _c["pretrained"]:

        rule:
            name:
                f"random_weights_{_m}"
            output:
                _c["pretrained"],
            log:
                f"results/models/logs/random_weights_{_m}.log",
            conda:
                "../envs/clipgeom.yaml"
            params:
                arch=_c["arch"],
                model_config=_c["model_config"],
                seed=_c["init_seed"],
                code=code_version(
                    "workflow/scripts/random_weights.py",
                    "embed",
                    "hashing",
                    "atomic",
                    "scripting",
                ),
            script:
                "../workflow/scripts/random_weights.py"


rule embed_shard:
    """One shard of images and captions through one open_clip model (raw float32)."""
    input:
        unpack(model_files),
        manifest="results/{dataset}/manifest.json",
    output:
        "results/{dataset}/{model}/shards/{scatteritem}.h5",
    log:
        "results/{dataset}/{model}/logs/embed_shard_{scatteritem}.log",
    benchmark:
        "results/{dataset}/{model}/benchmarks/embed_shard_{scatteritem}.tsv"
    conda:
        "../envs/clipgeom.yaml"
    threads: config["embedding"]["threads"]
    resources:
        gpu=embed_gpus,
        batch_size=config["embedding"]["batch_size"],
        text_batch_size=config["embedding"]["text_batch_size"],
        loader_workers=loader_workers,
        mem_mb=8000,
    params:
        model=lambda wc: model_cfg(wc.model),
        image_root=lambda wc: image_root(wc.dataset),
        code=code_version(
            "workflow/scripts/embed_shard.py",
            "embed",
            "data",
            "hashing",
            "imagesource",
            "h5io",
            "atomic",
            "scripting",
        ),
    script:
        "../workflow/scripts/embed_shard.py"


rule merge_embeddings:
    """Check every shard is there with the same provenance; write embeddings.h5."""
    input:
        manifest="results/{dataset}/manifest.json",
        shards=gather.split("results/{{dataset}}/{{model}}/shards/{scatteritem}.h5"),
    output:
        embeddings_h5(),
        rejected=rejected_csv(),
    log:
        "results/{dataset}/{model}/logs/merge_embeddings.log",
    wildcard_constraints:
        dataset=names_regex(model_datasets()),
    conda:
        "../envs/clipgeom.yaml"
    params:
        code=code_version(
            "workflow/scripts/merge_embeddings.py",
            "embed",
            "hashing",
            "h5io",
            "rejects",
            "outputs",
            "atomic",
            "scripting",
        ),
    script:
        "../workflow/scripts/merge_embeddings.py"


rule import_embeddings:
    """Precomputed embeddings (.npz, .npy or .h5) into the project's schema."""
    input:
        source=embeddings_source,
        # the dataset's metadata JSON (per-row captions, ids, file names), when it names one
        metadata=lambda wc: (
            [user_file(DATASETS[wc.dataset]["metadata"])]
            if DATASETS[wc.dataset].get("metadata")
            else []
        ),
    output:
        embeddings_h5(),
        rejected=rejected_csv(),
    log:
        "results/{dataset}/{model}/logs/import_embeddings.log",
    wildcard_constraints:
        dataset=names_regex(imported_datasets()),
    conda:
        "../envs/clipgeom.yaml"
    params:
        model=lambda wc: DATASETS[wc.dataset]["model"],
        policy=lambda wc: DATASETS[wc.dataset]["on_bad_item"],
        logit_scale=lambda wc: DATASETS[wc.dataset]["logit_scale"],
        code=code_version(
            "workflow/scripts/import_embeddings.py",
            "imported",
            "hashing",
            "h5io",
            "rejects",
            "outputs",
            "atomic",
            "scripting",
        ),
    script:
        "../workflow/scripts/import_embeddings.py"
