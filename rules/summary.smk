# Every stage's headline numbers for one dataset x model in one file.


rule summary:
    input:
        embeddings=embeddings_h5(),
        metrics=expand(
            "results/{{dataset}}/{{model}}/{stage}/metrics.json", stage=PAIR_STAGES
        ),
    output:
        summary=report(
            "results/{dataset}/{model}/summary.json",
            caption="../report/summary/summary_json.rst",
            category="Summary",
            subcategory="{dataset} × {model}",
            labels={
                "file": "summary.json",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        table=report(
            "results/{dataset}/{model}/summary_table.csv",
            caption="../report/summary/summary_table.rst",
            category="Summary",
            subcategory="{dataset} × {model}",
            labels={
                "file": "summary_table.csv",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        paper_table=report(
            "results/{dataset}/{model}/paper_vs_run.csv",
            caption="../report/summary/paper_vs_run.rst",
            category="Summary",
            subcategory="{dataset} × {model}",
            labels={
                "file": "paper_vs_run.csv",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
    log:
        "results/{dataset}/{model}/logs/summary.log",
    localrule: True  # cheap: on a cluster, run on the submit host
    conda:
        "../envs/clipgeom.yaml"
    params:
        stages=PAIR_STAGES,
        # an imported dataset names its own {model}, which is not under models:
        paper_setup=lambda wc: is_paper_setup(
            DATASETS[wc.dataset], MODELS.get(wc.model, {})
        ),
        code=code_version(
            "workflow/scripts/summary.py",
            "summary",
            "paper",
            "outputs",
            "compare",
            "h5io",
            "scripting",
        ),
    script:
        "../workflow/scripts/summary.py"
