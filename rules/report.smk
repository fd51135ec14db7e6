# The run's tables as HTML pages shown in the main panel of `snakemake --report report.html`
# (results/comparison/{run_name}/report/<kind>/index.html): headline numbers per dataset x model, every
# claim of the papers against every dataset x model, the cross-model table and the experiment arms.
# One job for the whole run. HTML: src/clipgeom/report_tables.py.

# report/<kind>/ (a directory holding only index.html, so that a pure-HTML report embeds it whole), one output each
REPORT_TABLES = ("summary", "claims", "comparison", "arms")


rule report_tables:
    input:
        summaries=[f"results/{d}/{m}/summary.json" for d, m in analysis_pairs()],
        paper_tables=[f"results/{d}/{m}/paper_vs_run.csv" for d, m in analysis_pairs()],
        comparison=comparison_path("summary_table.csv"),
        arms=comparison_path("arms_table.csv"),
    output:
        summary=report(
            directory(comparison_path("report/summary")),
            htmlindex="index.html",
            caption="../report/tables/summary.rst",
            category="Tables",
            subcategory="All datasets × models",
            labels={
                "table": "1. summary: headline numbers",
                "rows": "one per dataset × model",
            },
        ),
        claims=report(
            directory(comparison_path("report/claims")),
            htmlindex="index.html",
            caption="../report/tables/claims.rst",
            category="Tables",
            subcategory="All datasets × models",
            labels={
                "table": "2. the papers' claims",
                "rows": "one per claim and dataset × model",
            },
        ),
        comparison=report(
            directory(comparison_path("report/comparison")),
            htmlindex="index.html",
            caption="../report/tables/comparison.rst",
            category="Tables",
            subcategory="All datasets × models",
            labels={
                "table": "3. cross-model table",
                "rows": "one per summary.json key",
            },
        ),
        arms=report(
            directory(comparison_path("report/arms")),
            htmlindex="index.html",
            caption="../report/tables/arms.rst",
            category="Tables",
            subcategory="All datasets × models",
            labels={
                "table": "4. experiment arms",
                "rows": "one per arm (mean over seeds)",
            },
        ),
    log:
        comparison_path("logs/report_tables.log"),
    localrule: True  # cheap: on a cluster, run on the submit host
    conda:
        "../envs/clipgeom.yaml"
    params:
        run_name=config["run_name"],
        code=code_version(
            "workflow/scripts/report_tables.py",
            "report_tables",
            "compare",
            "summary",
            "atomic",
            "outputs",
            "scripting",
        ),
    script:
        "../workflow/scripts/report_tables.py"
