# Raw data -> manifest (which images and captions get embedded), demo data, COCO download.

# One download rule per COCO dataset that may be fetched. It runs only when the
# configured files are absent (Snakemake never re-creates existing outputs).
for _ds, _c in DATASETS.items():
    if _c["kind"] == "coco" and _c["download"]:

        rule:
            name:
                f"download_{_ds}"
            output:
                captions=_c["captions"],
                images=(
                    directory(_c["images"])
                    if not _c["images"].lower().endswith(".zip")
                    else _c["images"]
                ),
            log:
                f"results/{_ds}/logs/download.log",
            retries: 2
            localrule: True  # on a cluster, runs on the submit host (compute nodes often have no internet)
            conda:
                "../envs/clipgeom.yaml"
            params:
                images_url=_c["images_url"],
                annotations_url=_c["annotations_url"],
                member=_c["annotations_member"],
            script:
                "../workflow/scripts/download_coco.py"


rule make_demo_data:
    """The offline demo dataset: coloured shapes with template captions (seeded)."""
    output:
        captions="results/demo_data/{dataset}/captions.jsonl",
        images=directory("results/demo_data/{dataset}/images"),
    log:
        "results/demo_data/{dataset}/make_demo_data.log",
    wildcard_constraints:
        dataset=names_regex(generated_datasets("demo")),
    conda:
        "../envs/clipgeom.yaml"
    params:
        n_images=lambda wc: DATASETS[wc.dataset]["n_images"],
        captions_per_image=lambda wc: DATASETS[wc.dataset]["captions_per_demo_image"],
        image_size=lambda wc: DATASETS[wc.dataset]["image_size"],
        seed=lambda wc: DATASETS[wc.dataset]["seed"],
        code=code_version("workflow/scripts/make_demo_data.py", "demo", "scripting"),
    script:
        "../workflow/scripts/make_demo_data.py"


rule make_world_data:
    """A synthetic world's evaluation set: coloured shapes whose concepts and training frequencies are known."""
    output:
        captions="results/demo_data/{dataset}/captions.jsonl",
        images=directory("results/demo_data/{dataset}/images"),
    log:
        "results/demo_data/{dataset}/make_world_data.log",
    wildcard_constraints:
        dataset=names_regex(generated_datasets("world")),
    conda:
        "../envs/clipgeom.yaml"
    params:
        world=lambda wc: world_cfg(DATASETS[wc.dataset]["world"]),
        n_images=lambda wc: DATASETS[wc.dataset]["n_images"],
        captions_per_image=lambda wc: DATASETS[wc.dataset]["captions_per_demo_image"],
        balanced=lambda wc: DATASETS[wc.dataset]["balanced"],
        seed=lambda wc: DATASETS[wc.dataset]["seed"],
        code=code_version(
            "workflow/scripts/make_world_data.py", "world", "demo", "scripting"
        ),
    script:
        "../workflow/scripts/make_world_data.py"


rule prepare_dataset:
    """Check images and captions against each other; write the manifest (rejects included)."""
    input:
        unpack(dataset_inputs),
    output:
        manifest="results/{dataset}/manifest.json",
    log:
        "results/{dataset}/logs/prepare_dataset.log",
    wildcard_constraints:
        dataset=names_regex(
            [d for d, c in DATASETS.items() if c["kind"] != "embeddings"]
        ),
    conda:
        "../envs/clipgeom.yaml"
    params:
        dataset=lambda wc: dataset_cfg(wc.dataset),
        demo_root=lambda wc: product(demo_root(wc.dataset)),
        images_fingerprint=image_fingerprint,
        code=code_version(
            "workflow/scripts/prepare_dataset.py",
            "data",
            "hashing",
            "imagesource",
            "outputs",
            "atomic",
            "scripting",
        ),
    script:
        "../workflow/scripts/prepare_dataset.py"
