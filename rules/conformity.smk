# Conformity (paper §6-7): exact/estimated conformity (Figs. 8-9), KL matching of the image and
# text conformity distributions under the image shift (Figs. 10-11), external sets scored against a
# reference dataset (Fig. 13) and vertical SLERP (Eq. 12, Fig. 12).


rule conformity:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("conformity", "metrics.json"),
        values=stage_dir("conformity", "conformity.csv"),
        scatter_png=report(
            stage_dir("conformity", "conformity_scatter.png"),
            caption="../report/conformity/conformity_scatter.rst",
            category="Conformity",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "exact vs estimated conformity (Fig. 9)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        scatter_pdf=stage_dir("conformity", "conformity_scatter.pdf"),
        images_png=report(
            stage_dir("conformity", "extremes_images.png"),
            caption="../report/conformity/extremes_images.rst",
            category="Conformity",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "most / least conforming images (Fig. 8)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        images_pdf=stage_dir("conformity", "extremes_images.pdf"),
        captions_png=report(
            stage_dir("conformity", "extremes_captions.png"),
            caption="../report/conformity/extremes_captions.rst",
            category="Conformity",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "most / least conforming captions (Fig. 8)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        captions_pdf=stage_dir("conformity", "extremes_captions.pdf"),
    log:
        stage_log("conformity"),
    benchmark:
        stage_benchmark("conformity")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("conformity"),
        demo=is_demo,
        images=lambda wc: image_root(wc.dataset),
        code=script_code(
            "conformity",
            "conformity",
            "kl",
            "plots/conformity",
            "imagesource",
            "hashing",
        ),
    script:
        "../workflow/scripts/conformity.py"


rule kl_matching:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("kl_matching", "metrics.json"),
        values=stage_dir("kl_matching", "kl_curve.csv"),
        dist_png=report(
            stage_dir("kl_matching", "distributions.png"),
            caption="../report/kl_matching/distributions.rst",
            category="KL matching",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "conformity distributions (Fig. 10)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        dist_pdf=stage_dir("kl_matching", "distributions.pdf"),
        curve_png=report(
            stage_dir("kl_matching", "kl_curve.png"),
            caption="../report/kl_matching/kl_curve.rst",
            category="KL matching",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "KL vs α (Fig. 11)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        curve_pdf=stage_dir("kl_matching", "kl_curve.pdf"),
    log:
        stage_log("kl_matching"),
    benchmark:
        stage_benchmark("kl_matching")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("kl_matching"),
        demo=is_demo,
        code=script_code("kl_matching", "conformity", "kl", "grids", "plots/conformity"),
    script:
        "../workflow/scripts/kl_matching.py"


rule conformity_compare:
    input:
        reference=embeddings_h5(),
        external=lambda wc: list(external_embeddings(wc).values()),
    output:
        metrics=stage_dir("conformity_compare", "metrics.json"),
        values=stage_dir("conformity_compare", "conformity_compare.csv"),
        compare_png=report(
            stage_dir("conformity_compare", "compare.png"),
            caption="../report/conformity_compare/compare.rst",
            category="Conformity comparison",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "external sets' conformity (Fig. 13)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        compare_pdf=stage_dir("conformity_compare", "compare.pdf"),
    log:
        stage_log("conformity_compare"),
    benchmark:
        stage_benchmark("conformity_compare")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("conformity_compare"),
        demo=is_demo,
        sets=lambda wc: list(external_embeddings(wc)),  # names, in the order of input.external
        code=script_code("conformity_compare", "conformity", "kl", "plots/conformity"),
    script:
        "../workflow/scripts/conformity_compare.py"


rule vslerp:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("vslerp", "metrics.json"),
        values=stage_dir("vslerp", "vslerp_paths.csv"),
        paths_png=report(
            stage_dir("vslerp", "vslerp_neighbours.png"),
            caption="../report/vslerp/vslerp_neighbours.rst",
            category="vSLERP",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "vSLERP paths (Fig. 12)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        paths_pdf=stage_dir("vslerp", "vslerp_neighbours.pdf"),
        stats_png=report(
            stage_dir("vslerp", "vslerp_stats.png"),
            caption="../report/vslerp/vslerp_stats.rst",
            category="vSLERP",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "vSLERP cosine and norm",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        stats_pdf=stage_dir("vslerp", "vslerp_stats.pdf"),
    log:
        stage_log("vslerp"),
    benchmark:
        stage_benchmark("vslerp")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("vslerp"),
        demo=is_demo,
        images=lambda wc: image_root(wc.dataset),
        code=script_code(
            "vslerp", "vslerp", "plots/conformity", "imagesource", "hashing"
        ),
    script:
        "../workflow/scripts/vslerp.py"


# Prediction 1 (§6): conformity against each concept's training frequency (or a word-frequency proxy).
rule concept_frequency:
    input:
        embeddings=embeddings_h5(),
        # the word-frequency proxy's caption corpus, when one is configured (an input: a new file reruns)
        corpus=lambda wc: (
            [user_file(config["stages"]["concept_frequency"]["proxy_corpus"])]
            if config["stages"]["concept_frequency"]["proxy_corpus"]
            else []
        ),
    output:
        metrics=stage_dir("concept_frequency", "metrics.json"),
        concepts=stage_dir("concept_frequency", "concepts.csv"),
        samples=stage_dir("concept_frequency", "samples.csv"),
        figure_png=report(
            stage_dir("concept_frequency", "concept_frequency.png"),
            caption="../report/concept_frequency/concept_frequency.rst",
            category="Concept frequency",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "conformity vs concept frequency",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        figure_pdf=stage_dir("concept_frequency", "concept_frequency.pdf"),
    log:
        stage_log("concept_frequency"),
    benchmark:
        stage_benchmark("concept_frequency")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("concept_frequency"),
        demo=is_demo,
        code=script_code(
            "concept_frequency",
            "frequency",
            "stages/frequency",
            "plots/frequency",
            "conformity",
            "kl",
        ),
    script:
        "../workflow/scripts/concept_frequency.py"
