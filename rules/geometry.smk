# Geometry of the double ellipsoid (paper §3-§4) and EuCLIP's origin/[ROOT] distances: one rule per
# stage, per dataset x model, each reading results/{dataset}/{model}/embeddings.h5 in chunks.
# Equations: src/clipgeom/geometry.py (and kl.py); stage orchestration: src/clipgeom/stages/geometry.py;
# figures: src/clipgeom/plots/geometry.py.


rule separability:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("separability", "metrics.json"),
        values=stage_dir("separability", "values.csv"),
        curve=stage_dir("separability", "tag_threshold_curve.csv"),
        sorted_png=report(
            stage_dir("separability", "sep_sorted.png"),
            caption="../report/separability/sep_sorted.rst",
            category="Separability",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "separability Sep(ℓ), sorted (Eq. 5)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        sorted_pdf=stage_dir("separability", "sep_sorted.pdf"),
        mean_std_png=report(
            stage_dir("separability", "top_mean_over_std.png"),
            caption="../report/separability/top_mean_over_std.rst",
            category="Separability",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "top |mean|/std features (Fig. 3)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        mean_std_pdf=stage_dir("separability", "top_mean_over_std.pdf"),
        hist_png=report(
            stage_dir("separability", "top_feature_hist.png"),
            caption="../report/separability/top_feature_hist.rst",
            category="Separability",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "most separable features (Fig. 2)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        hist_pdf=stage_dir("separability", "top_feature_hist.pdf"),
        svm_png=report(
            stage_dir("separability", "svm_top2.png"),
            caption="../report/separability/svm_top2.rst",
            category="Separability",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "SVM on the top-2 features (Fig. 2)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        svm_pdf=stage_dir("separability", "svm_top2.pdf"),
    log:
        stage_log("separability"),
    benchmark:
        stage_benchmark("separability")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("separability"),
        demo=is_demo,
        code=script_code(
            "separability",
            "geometry",
            "stages/geometry",
            "kl",
            "grids",
            "plots/geometry",
        ),
    script:
        "../workflow/scripts/separability.py"


rule thin_shell:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("thin_shell", "metrics.json"),
        values=stage_dir("thin_shell", "values.csv"),
        features_png=report(
            stage_dir("thin_shell", "centred_features.png"),
            caption="../report/thin_shell/centred_features.rst",
            category="Thin shell",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "centred features x̃ (Fig. 4)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        features_pdf=stage_dir("thin_shell", "centred_features.pdf"),
        norms_png=report(
            stage_dir("thin_shell", "norms.png"),
            caption="../report/thin_shell/norms.rst",
            category="Thin shell",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "norms ‖x̃‖ (Fig. 4)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        norms_pdf=stage_dir("thin_shell", "norms.pdf"),
    log:
        stage_log("thin_shell"),
    benchmark:
        stage_benchmark("thin_shell")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("thin_shell"),
        demo=is_demo,
        code=script_code(
            "thin_shell",
            "geometry",
            "stages/geometry",
            "kl",
            "grids",
            "plots/geometry",
        ),
    script:
        "../workflow/scripts/thin_shell.py"


rule covariance:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("covariance", "metrics.json"),
        values=stage_dir("covariance", "values.csv"),
        variance_png=report(
            stage_dir("covariance", "variance_hist.png"),
            caption="../report/covariance/variance_hist.rst",
            category="Covariance",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "feature variances (Fig. 5)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        variance_pdf=stage_dir("covariance", "variance_hist.pdf"),
        odd_png=report(
            stage_dir("covariance", "odd_hist.png"),
            caption="../report/covariance/odd_hist.rst",
            category="Covariance",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "off-diagonal dominance (Fig. 5)",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        odd_pdf=stage_dir("covariance", "odd_hist.pdf"),
        spectrum_png=report(
            stage_dir("covariance", "eigen_spectrum.png"),
            caption="../report/covariance/eigen_spectrum.rst",
            category="Covariance",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "eigen-spectrum",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        spectrum_pdf=stage_dir("covariance", "eigen_spectrum.pdf"),
        whitening_png=report(
            stage_dir("covariance", "whitening.png"),
            caption="../report/covariance/whitening.rst",
            category="Covariance",
            subcategory="{dataset} × {model}",
            labels={"figure": "whitening", "dataset": "{dataset}", "model": "{model}"},
        ),
        whitening_pdf=stage_dir("covariance", "whitening.pdf"),
    log:
        stage_log("covariance"),
    benchmark:
        stage_benchmark("covariance")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("covariance"),
        demo=is_demo,
        code=script_code(
            "covariance",
            "geometry",
            "stages/geometry",
            "kl",
            "grids",
            "plots/geometry",
        ),
    script:
        "../workflow/scripts/covariance.py"


rule origin_distance:
    input:
        embeddings=embeddings_h5(),
    output:
        metrics=stage_dir("origin_distance", "metrics.json"),
        values=stage_dir("origin_distance", "values.csv"),
        origin_png=report(
            stage_dir("origin_distance", "origin_distance.png"),
            caption="../report/origin_distance/origin_distance.rst",
            category="Origin distance",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "distance from the origin",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        origin_pdf=stage_dir("origin_distance", "origin_distance.pdf"),
        root_png=report(
            stage_dir("origin_distance", "root_cosine_distance.png"),
            caption="../report/origin_distance/root_cosine_distance.rst",
            category="Origin distance",
            subcategory="{dataset} × {model}",
            labels={
                "figure": "cosine distance from [ROOT]",
                "dataset": "{dataset}",
                "model": "{model}",
            },
        ),
        root_pdf=stage_dir("origin_distance", "root_cosine_distance.pdf"),
    log:
        stage_log("origin_distance"),
    benchmark:
        stage_benchmark("origin_distance")
    conda:
        "../envs/clipgeom.yaml"
    params:
        p=stage_params("origin_distance"),
        demo=is_demo,
        code=script_code(
            "origin_distance",
            "geometry",
            "stages/geometry",
            "kl",
            "grids",
            "plots/geometry",
        ),
    script:
        "../workflow/scripts/origin_distance.py"
