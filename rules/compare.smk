# Cross-model comparison: every headline number of every dataset x model summary.json in one table
# and two figures (results/comparison/{run_name}/) — is the double ellipsoid universal? One job for the whole run.
# Computation: src/clipgeom/compare.py; figures: src/clipgeom/plots/compare.py.

from clipgeom.compare import HEADLINE_PATTERNS


rule compare_models:
    input:
        summaries=[f"results/{d}/{m}/summary.json" for d, m in analysis_pairs()],
    output:
        table=report(
            comparison_path("summary_table.csv"),
            caption="../report/compare/summary_table.rst",
            category="Cross-model comparison",
            subcategory="All datasets × models",
            labels={
                "figure": "summary_table.csv (CSV; shown under Tables)",
                "dataset": "all",
                "model": "all",
            },
        ),
        grid_png=report(
            comparison_path("headline_grid.png"),
            caption="../report/compare/headline_grid.rst",
            category="Cross-model comparison",
            subcategory="All datasets × models",
            labels={
                "figure": "headline numbers grid",
                "dataset": "all",
                "model": "all",
            },
        ),
        grid_pdf=comparison_path("headline_grid.pdf"),
        all_png=report(
            comparison_path("all_numbers.png"),
            caption="../report/compare/all_numbers.rst",
            category="Cross-model comparison",
            subcategory="All datasets × models",
            labels={
                "figure": "every number (heatmap)",
                "dataset": "all",
                "model": "all",
            },
        ),
        all_pdf=comparison_path("all_numbers.pdf"),
        arms=comparison_path("arms_table.csv"),
    log:
        comparison_path("logs/compare_models.log"),
    benchmark:
        comparison_path("benchmarks/compare_models.tsv")
    localrule: True  # cheap: on a cluster, run on the submit host
    conda:
        "../envs/clipgeom.yaml"
    params:
        pairs=[f"{d} × {m}" for d, m in analysis_pairs()],
        headline=list(HEADLINE_PATTERNS),
        arms=canonical(
            {
                m: {
                    "arm": c["arm"],
                    "logits": (c["train"] or {}).get("logits", "cosine"),
                }
                for m, c in MODELS.items()
                if c.get("arm")
            }
        ),
        code=code_version(
            "workflow/scripts/compare_models.py",
            "compare",
            "arms",
            "plots/compare",
            "summary",
            "paper",
            "outputs",
            "scripting",
        ),
    script:
        "../workflow/scripts/compare_models.py"
