# Every stage's headline numbers for one dataset x model in one file.


rule summary:
    input:
        embeddings=embeddings_h5(),
        metrics=expand("results/{{dataset}}/{{model}}/{stage}/metrics.json", stage=PAIR_STAGES),
    output:
        summary="results/{dataset}/{model}/summary.json",
        paper_table="results/{dataset}/{model}/paper_vs_run.csv",
    params:
        stages=PAIR_STAGES,
        paper_setup=lambda wc: is_paper_setup(DATASETS[wc.dataset], MODELS[wc.model]),
        code=code_version("workflow/scripts/summary.py", "summary", "paper", "outputs"),
    log:
        "results/{dataset}/{model}/logs/summary.log",
    conda:
        "../envs/clipgeom.yaml"
    script:
        "../workflow/scripts/summary.py"
