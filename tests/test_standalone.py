"""The workflow scripts run by hand: `python workflow/scripts/<rule>.py` builds the rule's real job from the
workflow (clipgeom.mock.mock_snakemake) and runs it; `--help` describes that rule under the given config."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from workflow_utils import run_snakemake, snakemake_env

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "workflow" / "scripts"
DEMO = REPO / "config" / "demo.yaml"


def script(name: str, *args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPTS / f"{name}.py"), *args]
    proc = subprocess.run(cmd, cwd=cwd, env=snakemake_env(), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{shlex.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def stage_defaults(stage: str) -> dict:
    sch = yaml.safe_load((REPO / "config" / "schema" / "stages" / f"{stage}.schema.yaml").read_text())
    return {k: v["default"] for k, v in sch["properties"].items()}


@pytest.fixture(scope="module")
def demo_rules():
    """{rule name: (input names, output names, param names)} of the workflow under the demo config."""
    from clipgeom.mock import open_workflow

    with open_workflow(DEMO) as wf:
        return {r.name: (list(r.input.keys()), list(r.output.keys()), list(r.params.keys())) for r in wf.rules}


@pytest.mark.parametrize(
    "name, wildcards",
    [
        ("thin_shell", "dataset=demo model=tiny-a"),
        ("alpha_sweep", "dataset=demo model=tiny-a"),
        ("summary", "dataset=demo model=tiny-a"),
        ("prepare_dataset", "dataset=demo"),  # input from a function (unpack): resolved by the job
    ],
)
def test_help_lists_the_rules_real_io(name, wildcards, demo_rules, tmp_path):
    # run from an unrelated directory: the workflow is found from the script's path
    out = script(name, "--help", "--configfile", str(DEMO), cwd=tmp_path).stdout
    inputs, outputs, params = demo_rules[name]
    assert f"Rule {name} (rules/" in out
    assert outputs and params
    for key in inputs + outputs:
        assert f"    {key}  " in out, (name, key)
    assert "params: " + ", ".join(params) in out
    assert f"jobs of this config's default target: {wildcards}" in out
    # the example command it prints builds the job (-n: print it, run nothing)
    example = out.split("example (add -n to print the job without running it):\n", 1)[1].strip().splitlines()[0]
    argv = shlex.split(example)
    assert argv[:2] == ["python", str(SCRIPTS / f"{name}.py")]
    job = script(name, *argv[2:], "-n", cwd=tmp_path).stdout
    assert job.startswith(f"rule {name}, wildcards: {wildcards}")
    assert not (tmp_path / "results").exists() and not (tmp_path / ".snakemake").exists()


def test_help_without_config_and_rules_defined_per_model(tmp_path):
    out = script("thin_shell", "--help", cwd=tmp_path).stdout
    assert "under config config/config.yaml (the default)" in out
    assert "dataset=coco_val2017 model=ViT-B-32-openai" in out  # the paper's setup
    # random_weights_<model>: one rule per seeded model; --rule picks one (two seeded models here)
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["models"]["tiny-a"] = {**cfg["models"]["tiny-b"], "init_seed": 0, "pretrained": "results/models/s0.pt"}
    two = tmp_path / "two_seeded.yaml"
    two.write_text(yaml.safe_dump(cfg))
    bad = script("random_weights", "--configfile", str(two), "-n", cwd=tmp_path, check=False)
    assert bad.returncode != 0 and "random_weights_tiny-a, random_weights_tiny-b" in bad.stderr
    job = script("random_weights", "--configfile", str(two), "--rule", "random_weights_tiny-b", "-n", cwd=tmp_path)
    assert "output: results/models/tiny-clip-seed1.pt" in job.stdout and "seed          1" in job.stdout


def test_wrong_wildcards_name_the_jobs_of_the_config(tmp_path):
    bad = script("thin_shell", "--configfile", str(DEMO), "dataset=nope", "model=x", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "KeyError: 'nope'" in bad.stderr
    assert "dataset=demo model=tiny-a; dataset=demo model=tiny-b" in bad.stderr
    bad = script("thin_shell", "--configfile", str(DEMO), "dataset=demo", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "missing model" in bad.stderr
    # a job whose input is not there yet: says which, and how to make it
    bad = script("thin_shell", "--configfile", str(DEMO), "dataset=demo", "model=tiny-a", cwd=tmp_path, check=False)
    assert bad.returncode == 1 and "input is missing: results/demo/tiny-a/embeddings.h5" in bad.stderr


def test_schema_defaults_and_overrides(tmp_path):
    from clipgeom.mock import mock_snakemake

    cfg = yaml.safe_load(DEMO.read_text())
    cfg["stages"] = {"thin_shell": {"hist_bins": 30}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    job = mock_snakemake("thin_shell", path, dataset="demo", model="tiny-b")
    assert dict(job.params.p) == {**stage_defaults("thin_shell"), "hist_bins": 30}
    assert job.params.demo is True and job.input.embeddings == "results/demo/tiny-b/embeddings.h5"
    assert job.log == ["results/demo/tiny-b/logs/thin_shell.log"] and job.rule == "thin_shell"
    # a --config override on top; the other keys keep the schema's defaults
    job = mock_snakemake(
        "alpha_sweep", DEMO, {"stages": {"alpha_sweep": {"alpha_step": 0.5}}}, threads=3, dataset="demo", model="tiny-a"
    )
    assert dict(job.params.p) == {**stage_defaults("alpha_sweep"), "alpha_step": 0.5}
    assert job.threads == 3
    assert mock_snakemake("alpha_sweep", DEMO, dataset="demo", model="tiny-a").threads == 1  # sweep_threads: demo
    out = script("blur_simulation", "--configfile", str(DEMO), "-n", cwd=tmp_path).stdout
    assert f"p     {dict(sorted(stage_defaults('blur_simulation').items()))!r}" in out


def test_standalone_run_equals_the_workflows(shared_data, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cfg = {
        "datasets": {
            "coco500": {
                "kind": "embeddings",
                "path": str(shared_data / "clip-vitb16-coco500" / "features_clip.npy"),
                "model": "vitb16",
            }
        },
        "stages": {"thin_shell": {"hist_bins": 40}},
    }
    config = tmp_path / "coco500.yaml"
    config.write_text(yaml.safe_dump(cfg))
    stage = work / "results" / "coco500" / "vitb16" / "thin_shell"
    run_snakemake(work, config, "--cores", "2", str(stage.relative_to(work) / "metrics.json"))
    by_snakemake = json.loads((stage / "metrics.json").read_text())
    shutil.move(stage, tmp_path / "by_snakemake")
    log = work / "results" / "coco500" / "vitb16" / "logs" / "thin_shell.log"
    log.unlink()

    # by hand, from another directory: --directory names the working directory, as for snakemake
    args = ["--configfile", str(config), "--directory", str(work), "--threads", "2"]
    proc = script("thin_shell", *args, "dataset=coco500", "model=vitb16", cwd=tmp_path)
    assert "rule thin_shell dataset=coco500 model=vitb16 outside Snakemake" in proc.stderr
    by_hand = json.loads((stage / "metrics.json").read_text())
    assert by_hand == by_snakemake
    assert by_hand["params"]["hist_bins"] == 40 and by_hand["params"]["ddof"] == stage_defaults("thin_shell")["ddof"]
    assert sorted(p.name for p in stage.iterdir()) == sorted(p.name for p in (tmp_path / "by_snakemake").iterdir())
    assert "wrote results/coco500/vitb16/thin_shell/metrics.json" in log.read_text()

    # explicit paths (no workflow): p gets the schema's defaults for the keys it leaves out
    out = tmp_path / "explicit"
    names = {"metrics": "metrics.json", "values": "values.csv", "features_png": "f.png", "features_pdf": "f.pdf"}
    names |= {"norms_png": "n.png", "norms_pdf": "n.pdf"}
    explicit = [
        "--input",
        f"embeddings={work / 'results/coco500/vitb16/embeddings.h5'}",
        "--output",
        *[f"{k}={out / v}" for k, v in names.items()],
        "--params",
        json.dumps({"p": {"hist_bins": 40}, "demo": False}),
        "--wildcards",
        "dataset=coco500",
        "model=vitb16",
    ]
    script("thin_shell", *explicit, cwd=tmp_path)
    assert json.loads((out / "metrics.json").read_text()) == by_snakemake
