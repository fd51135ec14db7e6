"""The workflow as a module of another workflow, and --config overrides typed by the schema.

A host workflow in a temporary directory uses this repository's Snakefile as a Snakemake module
(`module clipgeom: snakefile: ...; use rule * from clipgeom as clipgeom_*`, what snakedeploy writes),
with `prefix:` and without, and runs the offline demo through it. Its numbers must equal a plain run's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from workflow_utils import REPO, SNAKEMAKE, run_snakemake, snakemake_env

from clipgeom.config import coerce_to_schema, load_schema, validate_config

SMALL_DEMO = {
    "run_name": "hosted",
    "datasets": {"shapes": {"kind": "demo", "n_images": 16, "captions_per_demo_image": 2, "image_size": 32}},
    "models": {
        "tiny": {
            "arch": "tiny-clip",
            "model_config": "config/models/tiny-clip.json",  # resolved against the module's own checkout
            "pretrained": "results/models/tiny-seed0.pt",
            "init_seed": 0,
            "device": "cpu",
        }
    },
    "embedding": {"shards": 1, "threads": 1, "loader_workers": 0},
}

HOST = """\
configfile: "host.yaml"


module clipgeom:
    snakefile:
        "{snakefile}"
    config:
        config["clipgeom"]
{prefix}

use rule * from clipgeom as clipgeom_*


rule all:
    input:
        rules.clipgeom_all.input,
    default_target: True
"""


def _host(tmp: Path, prefix: str | None) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "host.yaml").write_text(yaml.safe_dump({"clipgeom": SMALL_DEMO, "host_setting": 1}))
    pre = f'    prefix:\n        "{prefix}"' if prefix else ""
    (tmp / "Snakefile").write_text(HOST.format(snakefile=REPO / "Snakefile", prefix=pre))
    return tmp


def _run_host(host: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [*SNAKEMAKE, "--cores", "2", *args],
        cwd=host,
        env=snakemake_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return proc


def _embeddings(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(path, "r") as f:
        return f["image/embedding"][:], f["text/embedding"][:]


@pytest.mark.slow
def test_demo_runs_as_a_module_with_and_without_prefix(tmp_path):
    # the same config as a plain run, for the numbers
    plain = tmp_path / "plain"
    plain.mkdir()
    cfg = plain / "demo.yaml"
    cfg.write_text(yaml.safe_dump(SMALL_DEMO))
    run_snakemake(plain, cfg, "--cores", "2")
    ref_img, ref_txt = _embeddings(plain / "results/shapes/tiny/embeddings.h5")
    ref_summary = json.loads((plain / "results/shapes/tiny/summary.json").read_text())

    for prefix in ("clipgeom", None):
        host = _host(tmp_path / f"host-{prefix}", prefix)
        _run_host(host)
        out = host / (f"{prefix}/results" if prefix else "results")
        if prefix:  # nothing of the module's lands outside its prefix
            assert not (host / "results").exists()
        img, txt = _embeddings(out / "shapes/tiny/embeddings.h5")
        np.testing.assert_array_equal(img, ref_img)
        np.testing.assert_array_equal(txt, ref_txt)
        summary = json.loads((out / "shapes/tiny/summary.json").read_text())
        for stage in ("thin_shell", "covariance", "conformity", "alpha_sweep"):
            assert summary[stage] == ref_summary[stage], stage
        assert (out / "comparison/hosted/summary_table.csv").exists()
        # the host's rule names carry the module's rule prefix; a second run has nothing to do
        again = _run_host(host, "-n")
        assert "Nothing to be done" in again.stdout + again.stderr


def test_config_overrides_from_the_command_line_are_typed_by_the_schema(tmp_path):
    """Nested --config values arrive as strings ('0.25'); the schema types them before validation."""
    schema = load_schema(REPO / "config" / "schema")
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    cfg["stages"] = {"alpha_sweep": {"alpha_step": "0.25", "alpha_min": "-1"}, "vslerp": {"n_random_pairs": "3"}}
    cfg["datasets"]["demo"]["seed"] = "7"
    cfg["datasets"]["demo"]["analyse"] = "false"
    cfg["models"]["tiny-a"]["init_seed"] = "null"
    cfg["models"]["tiny-b"]["pretrained"] = "123"  # a string field stays a string
    cfg["run_name"] = "2026"
    coerce_to_schema(cfg, schema)
    assert cfg["stages"]["alpha_sweep"]["alpha_step"] == 0.25
    assert cfg["stages"]["alpha_sweep"]["alpha_min"] == -1.0
    assert cfg["stages"]["vslerp"]["n_random_pairs"] == 3 and isinstance(cfg["stages"]["vslerp"]["n_random_pairs"], int)
    assert cfg["datasets"]["demo"]["seed"] == 7 and cfg["datasets"]["demo"]["analyse"] is False
    assert cfg["models"]["tiny-a"]["init_seed"] is None
    assert cfg["models"]["tiny-b"]["pretrained"] == "123" and cfg["run_name"] == "2026"
    # a string that is not a number stays a string, and validation names the key
    bad = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    bad["stages"] = {"alpha_sweep": {"alpha_step": "fast"}}
    with pytest.raises(ValueError, match="stages.alpha_sweep.alpha_step"):
        validate_config(bad, REPO / "config" / "schema")


@pytest.mark.slow
def test_config_override_reruns_only_what_it_changes(tmp_path, shared_data):
    """`--config` on top of a config file: nested values typed, only the affected stage reruns."""
    cfg = tmp_path / "real.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "run_name": "real",
                "datasets": {
                    "clip500": {
                        "kind": "embeddings",
                        "path": str(shared_data / "clip-vitb16-coco500" / "features_clip.npy"),
                        "model": "vitb16",
                    }
                },
            }
        )
    )
    run_snakemake(tmp_path, cfg, "--cores", "2")
    metrics = tmp_path / "results/clip500/vitb16/alpha_sweep/metrics.json"
    assert json.loads(metrics.read_text())["params"]["alpha_step"] == 0.1
    override = ["--config", "stages={alpha_sweep: {alpha_step: 0.25}}", "run_name=real"]
    dry = run_snakemake(tmp_path, cfg, "-n", *override)
    out = dry.stdout + dry.stderr
    assert "rule alpha_sweep:" in out and "rule thin_shell:" not in out and "rule import_embeddings:" not in out
    run_snakemake(tmp_path, cfg, "--cores", "2", *override)
    m = json.loads(metrics.read_text())
    assert m["params"]["alpha_step"] == 0.25 and isinstance(m["params"]["alpha_step"], float)
    # a top-level override: the cross-model table of another run_name, the first one left as it was
    run_snakemake(tmp_path, cfg, "--cores", "2", "--config", "run_name=other")
    assert (tmp_path / "results/comparison/other/summary_table.csv").exists()
    assert (tmp_path / "results/comparison/real/summary_table.csv").exists()


def test_default_config_is_the_workflows_own_from_any_directory(tmp_path):
    """No --configfile: the workflow's config/config.yaml (not ./config/config.yaml of the working
    directory) and --config on top of it."""
    proc = run_snakemake(tmp_path, None, "-n", "--quiet", "rules", "--config", "run_name=elsewhere")
    out = proc.stdout + proc.stderr
    assert "download_coco_val2017" in out and "embed_shard" in out
