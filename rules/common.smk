# Config validation and every input/param helper the rules share.
import hashlib
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

# This workflow's own directory: its schema, scripts and model configs resolve against it, also
# when it runs as a module of another workflow (where workflow.basedir is the host's directory).
if not str(workflow.current_basedir).startswith("/"):
    raise WorkflowError(
        f"clipgeom runs as a module only from a local checkout (got {workflow.current_basedir}): "
        "clone the repository and name its Snakefile by path in `module ...: snakefile:`"
    )
ROOT = Path(str(workflow.current_basedir)).parent
PKG = ROOT / "src" / "clipgeom"


def _import_clipgeom():
    """The clipgeom package: installed (pip install -e <this checkout>), else this checkout's src/."""
    try:
        import clipgeom
    except ImportError:
        sys.path.insert(0, str(ROOT / "src"))
        import clipgeom
    here = Path(clipgeom.__file__).resolve().parent
    if here != PKG.resolve():
        logger.warning(
            f"clipgeom is imported from {here}, not from this workflow's {PKG}: "
            "install this checkout (pip install -e) so that the rules and the package agree"
        )


_import_clipgeom()

from clipgeom.config import (
    canonical,
    check_config,
    open_clip_architectures,
    validate_config,
)
from clipgeom.summary import is_paper_setup

validate_config(config, ROOT / "config" / "schema")
# Dangling references, keys a kind needs, weights, precision, architectures, grids, shard count:
# every config error surfaces here, before any job.
check_config(
    config,
    known_archs=open_clip_architectures(),
    n_shards=workflow.resource_settings.overwrite_scatter.get(
        "split", config["embedding"]["shards"]
    ),
)

DATASETS = config["datasets"]
MODELS = config["models"]  # may be empty: a config that only imports embeddings

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
    "conformity_compare",
    "concept_frequency",
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
    return [
        (d, m) for d, m in embedding_pairs() if is_paired(d) and DATASETS[d]["analyse"]
    ]


def external_sets(reference):
    """External sets scored against `reference` (conformity_compare)."""
    return [d for d, c in DATASETS.items() if c.get("reference") == reference]


def embeddings_h5(dataset="{dataset}", model="{model}"):
    return f"results/{dataset}/{model}/embeddings.h5"


def rejected_csv(dataset="{dataset}", model="{model}"):
    """Every item left out of a dataset x model's embeddings, whoever rejected it (README: Outputs)."""
    return f"results/{dataset}/{model}/rejected.csv"


def stage_dir(stage, filename=None):
    """results/{dataset}/{model}/<stage>[/<filename>] (wildcards left open)."""
    d = f"results/{{dataset}}/{{model}}/{stage}"
    return f"{d}/{filename}" if filename else d


def stage_log(stage):
    return f"results/{{dataset}}/{{model}}/logs/{stage}.log"


def stage_benchmark(stage):
    return f"results/{{dataset}}/{{model}}/benchmarks/{stage}.tsv"


def stage_params(stage):
    """The stage's config block, keys sorted (params compare by repr)."""
    return canonical(config["stages"][stage])


def is_demo(wildcards):
    """Generated data (demo shapes, a synthetic world): its outputs say they are not CLIP."""
    return DATASETS[wildcards.dataset]["kind"] in ("demo", "world")


def sweep_threads(wildcards):
    """Threads of alpha_sweep: 2, or 1 for a generated dataset too small for the sweep to use a second thread
    (it runs serially below 2,048 pairs), so that it does not hold a core it leaves idle.
    """
    d = DATASETS[wildcards.dataset]
    return (
        1 if d["kind"] in ("demo", "world") and int(d.get("n_images", 0)) < 2048 else 2
    )


def code_version(*modules):
    """sha256 of the package modules (and this rule's script) a rule runs.

    Passed as a param, so editing the code a stage uses reruns that stage
    (Snakemake does not track imported modules, and its `code` trigger only
    compares a script's file time). After a fresh clone, where every file time
    is new, `--rerun-triggers params input software-env` shows the jobs whose
    code or settings really changed (README: "Rerunning one stage").
    """
    h = hashlib.sha256()
    for m in sorted(set(modules)):
        p = ROOT / m if m.startswith("workflow/") else PKG / f"{m}.py"
        h.update(m.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def script_code(stage, *modules):
    """code_version of the stage script, clipgeom's shared I/O modules and `modules`."""
    return code_version(
        f"workflow/scripts/{stage}.py",
        "h5io",
        "outputs",
        "scripting",
        "atomic",
        *modules,
    )


wildcard_constraints:
    dataset="[A-Za-z0-9][A-Za-z0-9_.-]*",
    model="[A-Za-z0-9][A-Za-z0-9_.-]*",


# ------------------------------------------------------------------ data and embedding helpers
def names_regex(names):
    """A wildcard regex matching exactly `names` (or nothing when empty)."""
    import re

    return "|".join(re.escape(n) for n in names) if names else "(?!x)x"


# Used as a module with `prefix: "<dir>"`, Snakemake puts every relative input, output and log of
# these rules under <dir>/. Paths that reach a script through params must get the same prefix when
# they are workflow products (results/...); a user's own files (data, checkpoints, model configs) must
# not get it: they are marked local().
PREFIX = (
    getattr(getattr(workflow.modifier, "path_modifier", None), "prefix", None) or ""
)


def product(path):
    """A workflow product's path (results/...) as a script sees it: with the module's prefix."""
    return PREFIX + path if path and path.startswith("results/") else path


def user_file(path):
    """A user's own file, exempt from a module's prefix (results/... paths are products, prefixed)."""
    if (
        not PREFIX
        or not path
        or path.startswith("results/")
        or Path(path).is_absolute()
    ):
        return path
    return local(path)


def demo_root(dataset):
    """Where the workflow generates a dataset of a generated kind (demo shapes, a synthetic world)."""
    return f"results/demo_data/{dataset}"


def generated_datasets(kind):
    return [d for d, c in DATASETS.items() if c["kind"] == kind]


def world_cfg(name):
    """A world's full spec (schema defaults applied), keys sorted."""
    return canonical(config["worlds"][name])


def dataset_cfg(dataset):
    return canonical(DATASETS[dataset])


def dataset_inputs(wildcards):
    """Raw input files of a dataset (missing ones fail with a message that says where to put them)."""
    c = DATASETS[wildcards.dataset]
    if c["kind"] in ("demo", "world"):
        return {
            "captions": f"{demo_root(wildcards.dataset)}/captions.jsonl",
            "images": f"{demo_root(wildcards.dataset)}/images",
        }
    files = {k: user_file(c[k]) for k in ("captions", "images") if c.get(k)}
    if not (c["kind"] == "coco" and c["download"]):
        for key, path in files.items():
            if not Path(path).exists() and not path.startswith("results/"):
                raise WorkflowError(
                    f"dataset {wildcards.dataset!r}: {key} not found at {path!r}. Put the file there, or "
                    f"change datasets.{wildcards.dataset}.{key} in the config"
                    + (
                        ", or set download: true to fetch COCO's official archives"
                        if c["kind"] == "coco"
                        else ""
                    )
                )
    return files


def image_fingerprint(wildcards):
    """A cheap fingerprint of a dataset's image folder: (relative name, size, mtime) of every file.

    A param of prepare_dataset, so that an image replaced in place (same name, new bytes) —
    which leaves the folder's own time unchanged — rebuilds the manifest, whose per-image
    sha256 then re-embeds the changed images' dataset. One stat per file: no file is read.
    A zip archive is an input file and tracked by its own time; demo images are rule outputs.
    """
    import os

    c = DATASETS[wildcards.dataset]
    root = c.get("images") if c["kind"] in ("coco", "folder", "images") else None
    if not root or not Path(root).is_dir():
        return "none"
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            st = os.stat(full)
            h.update(
                f"{os.path.relpath(full, root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode()
            )
    return h.hexdigest()[:16]


def image_root(dataset):
    c = DATASETS[dataset]
    return (
        product(f"{demo_root(dataset)}/images")
        if c["kind"] in ("demo", "world")
        else c.get("images")
    )


def _model_config_path(p):
    """A relative model_config resolves against the working directory, else against the repository."""
    if p and not Path(p).exists() and (ROOT / p).exists():
        return str(ROOT / p)
    return p


for _c in MODELS.values():
    _c["model_config"] = _model_config_path(_c["model_config"])


def made_here(c):
    """True for a model whose weights the workflow writes (seeded random or trained): a workflow product."""
    return c["init_seed"] is not None or bool(c.get("train"))


def model_cfg(model):
    """A model's config as its embedding job reads it (random or trained weights are a workflow product).

    The training settings and the experiment arm label are left out: the checkpoint is an input of the
    embedding job, so a model trained again is embedded again, and other models keep the params they had.
    """
    c = canonical({k: v for k, v in MODELS[model].items() if k not in ("train", "arm")})
    if (
        made_here(MODELS[model])
        and c["pretrained"]
        and not Path(c["pretrained"]).is_absolute()
    ):
        c["pretrained"] = PREFIX + c["pretrained"]
    return c


def model_files(wildcards):
    """Local files a model needs: its JSON config and a local checkpoint."""
    c = MODELS[wildcards.model]
    files = {}
    if c["model_config"]:
        files["model_config"] = user_file(c["model_config"])
    p = c["pretrained"]
    if p and (
        made_here(c) or Path(p).suffix in (".pt", ".pth", ".bin", ".safetensors")
    ):
        files["checkpoint"] = p if made_here(c) else user_file(p)
    return files


def loader_workers(wildcards, threads):
    """DataLoader processes of an embedding job: embedding.loader_workers, or by default the job's
    threads but one (that one drives the model), so --set-threads embed_shard=N sizes the decoding.
    """
    n = config["embedding"]["loader_workers"]
    return max(0, threads - 1) if n is None else n


def embed_gpus(wildcards):
    return 0 if MODELS[wildcards.model]["device"] == "cpu" else 1


def embeddings_source(wildcards):
    return user_file(DATASETS[wildcards.dataset]["path"])


def comparison_path(filename):
    """results/comparison/{run_name}/<filename>: what depends on the whole config is kept per run_name,
    so that the demo and the paper's config (or any two configs) do not overwrite each other's.
    """
    return f"results/comparison/{config['run_name']}/{filename}"


def all_targets():
    targets = [embeddings_h5(d, m) for d, m in embedding_pairs()]
    targets += [rejected_csv(d, m) for d, m in embedding_pairs()]
    targets += [f"results/{d}/{m}/summary.json" for d, m in analysis_pairs()]
    targets += ["results/simulations/blur_simulation/metrics.json"]
    targets += [comparison_path("summary_table.csv")]
    targets += [comparison_path(f"report/{k}") for k in REPORT_TABLES]
    return targets


def external_embeddings(wildcards):
    """{set name: embeddings.h5} of the external sets scored against this dataset with this model.

    Image/caption sets are embedded by the same model; an imported set carries its own
    model name and is scored against the references of the models its `models:` lists
    (all, when unset: the config asserts it came from the same model)."""
    out = {}
    for e in external_sets(wildcards.dataset):
        if DATASETS[e]["kind"] == "embeddings":
            # `models:` on an imported set names the models whose references it is scored against
            if (
                DATASETS[e]["models"] is None
                or wildcards.model in DATASETS[e]["models"]
            ):
                out[e] = embeddings_h5(e, DATASETS[e]["model"])
        elif wildcards.model in models_for(e):
            out[e] = embeddings_h5(e, wildcards.model)
    return out
