# Config validation and every input/param helper the rules share.
import hashlib
from pathlib import Path

from clipgeom.config import canonical, validate_config

validate_config(config, Path(workflow.basedir) / "config" / "schema")

ROOT = Path(workflow.basedir)
PKG = ROOT / "src" / "clipgeom"
DATASETS = config["datasets"]
MODELS = config["models"]

# Analysis stages that run once per dataset x model; each writes
# results/{dataset}/{model}/{stage}/metrics.json, whose "summary" block summary.json gathers.
PAIR_STAGES = [
    "separability",
    "thin_shell",
    "covariance",
    "origin_distance",
    "alpha_sweep",
    "conformity",
    "kl_matching",
    "vslerp",
]


def model_datasets():
    """Datasets whose embeddings come from running a model."""
    return [d for d, c in DATASETS.items() if c["kind"] != "embeddings"]


def imported_datasets():
    return [d for d, c in DATASETS.items() if c["kind"] == "embeddings"]


def models_for(dataset):
    c = DATASETS[dataset]
    if c["kind"] == "embeddings":
        return [c["model"]]
    return list(c["models"] or MODELS)


def embedding_pairs():
    """Every (dataset, model) that gets an embeddings.h5."""
    return [(d, m) for d in DATASETS for m in models_for(d)]


def is_paired(dataset):
    return DATASETS[dataset]["kind"] not in ("images", "captions")


def analysis_pairs():
    """(dataset, model) pairs that the per-dataset stages run on."""
    return [(d, m) for d, m in embedding_pairs() if is_paired(d) and DATASETS[d]["analyse"]]


def external_sets(reference):
    """External sets scored against `reference` (conformity_compare)."""
    return [d for d, c in DATASETS.items() if c.get("reference") == reference]


def embeddings_h5(dataset="{dataset}", model="{model}"):
    return f"results/{dataset}/{model}/embeddings.h5"


def stage_dir(stage):
    return f"results/{{dataset}}/{{model}}/{stage}"


def stage_log(stage):
    return f"results/{{dataset}}/{{model}}/logs/{stage}.log"


def stage_benchmark(stage):
    return f"results/{{dataset}}/{{model}}/benchmarks/{stage}.tsv"


def stage_params(stage):
    """The stage's config block, keys sorted (params compare by repr)."""
    return canonical(config["stages"][stage])


def is_demo(wildcards):
    return DATASETS[wildcards.dataset]["kind"] == "demo"


def code_version(*modules):
    """sha256 of the package modules (and this rule's script) a rule runs.

    Passed as a param, so editing the code a stage uses reruns that stage
    (Snakemake does not track imported modules), while fresh clones — whose
    file times are all new — do not rerun anything whose code is unchanged.
    """
    h = hashlib.sha256()
    for m in sorted(set(modules)):
        p = ROOT / m if m.startswith("workflow/") else PKG / f"{m}.py"
        h.update(m.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def script_code(stage, *modules):
    """code_version of the stage script, clipgeom's shared I/O modules and `modules`."""
    return code_version(f"workflow/scripts/{stage}.py", "h5io", "outputs", "scripting", *modules)


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",
