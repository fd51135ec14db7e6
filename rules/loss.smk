# The CLIP loss on a double ellipsoid (paper §5-§6): the alpha sweep of Eqs. 7-9 (Fig. 6, its text-shift
# and Euclidean variants), per dataset x model; and the Fig. 7 blur simulation, once.
# Equations: src/clipgeom/loss.py, src/clipgeom/blur.py; the fast sweep: sweep.py, sweep_kernel.py; stage
# orchestration: src/clipgeom/stages/loss.py; figures: src/clipgeom/plots/loss.py.

BLUR_DIR = "results/simulations/blur_simulation"


rule alpha_sweep:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("alpha_sweep", "metrics.json"),
        curves=stage_dir("alpha_sweep", "curves.csv"),
        loss_png=report(
            stage_dir("alpha_sweep", "loss_curves.png"),
            caption="../report/alpha_sweep/loss_curves.rst",
            category="Loss (alpha sweep)",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "loss under a mean shift (Fig. 6)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        loss_pdf=stage_dir("alpha_sweep", "loss_curves.pdf"),
        geometry_png=report(
            stage_dir("alpha_sweep", "geometry_curves.png"),
            caption="../report/alpha_sweep/geometry_curves.rst",
            category="Loss (alpha sweep)",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "loss per logit geometry",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        geometry_pdf=stage_dir("alpha_sweep", "geometry_curves.pdf"),
    log:
        stage_log("alpha_sweep"),
    benchmark:
        stage_benchmark("alpha_sweep")
    conda:
        "../envs/clipgeom.yaml"
    threads: sweep_threads
    params:
        p=stage_params("alpha_sweep"),
        demo=is_demo,
        code=script_code(
            "alpha_sweep",
            "loss",
            "stages/loss",
            "sweep",
            "sweep_kernel",
            "grids",
            "threads",
            "plots/loss",
        ),
    script:
        "../workflow/scripts/alpha_sweep.py"


rule blur_simulation:
    output:
        metrics=f"{BLUR_DIR}/metrics.json",
        values=f"{BLUR_DIR}/values.csv",
        hist_png=report(
            f"{BLUR_DIR}/blur_histograms.png",
            caption="../report/blur_simulation/blur_histograms.rst",
            category="Blur simulation",
            subcategory="Fig. 7",
            labels={
                "figure": "blur histograms (Fig. 7)",
                "dataset": "simulated",
                "model": "none",
            },
        ),
        hist_pdf=f"{BLUR_DIR}/blur_histograms.pdf",
    log:
        f"{BLUR_DIR}/logs/blur_simulation.log",
    benchmark:
        f"{BLUR_DIR}/benchmarks/blur_simulation.tsv"
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("blur_simulation"),
        code=script_code("blur_simulation", "blur", "plots/loss"),
    script:
        "../workflow/scripts/blur_simulation.py"
