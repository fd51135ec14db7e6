# Small CLIPs trained here on synthetic worlds with known concept frequencies (clipgeom.world):
# one rule per model with a `train:` block, writing the checkpoint that `pretrained:` names.
# Computation: src/clipgeom/train.py; figure: src/clipgeom/plots/train.py.


for _m, _c in MODELS.items():
    if _c.get("train"):

        rule:
            name:
                f"train_model_{_m}"
            output:
                checkpoint=_c["pretrained"],
                metrics=f"results/models/{_m}/train_metrics.json",
                curve=f"results/models/{_m}/train_curve.csv",
                png=report(
                    f"results/models/{_m}/training.png",
                    caption="../report/train/training.rst",
                    category="Training",
                    subcategory=_m,
                    labels={
                        "figure": "training",
                        "dataset": f"world {_c['train']['world']}",
                        "model": _m,
                    },
                ),
                pdf=f"results/models/{_m}/training.pdf",
            log:
                f"results/models/logs/train_model_{_m}.log",
            benchmark:
                f"results/models/benchmarks/train_model_{_m}.tsv"
            conda:
                "../envs/clipgeom.yaml"
            threads: _c["train"]["threads"]
            resources:
                gpu=0 if _c["device"] == "cpu" else 1,
            params:
                arch=_c["arch"],
                model_config=_c["model_config"],
                device=_c["device"],
                train=canonical(_c["train"]),
                world=world_cfg(_c["train"]["world"]),
                code=code_version(
                    "workflow/scripts/train_model.py",
                    "train",
                    "world",
                    "demo",
                    "embed",
                    "threads",
                    "plots/train",
                    "outputs",
                    "atomic",
                    "scripting",
                ),
            script:
                "../workflow/scripts/train_model.py"
