"""One-stage reruns, proven from Snakemake's own dry run after one complete demo run.

* a stage's config value changes -> only that stage and what depends on it (summary, compare_models) rerun;
* a performance knob (embedding batch size, a `resources:` value) changes -> nothing reruns;
* the package code a stage imports changes (its sha256 is a param) -> that stage reruns, nothing else;
* every source/config file gets a new mtime with the same content (a fresh clone, restored results) ->
  the default triggers rerun everything (mtime, and the script-mtime `code` trigger), while the documented
  remedy — `--rerun-triggers params input software-env` to see what really changed, `snakemake --touch`
  once to record the new times — says "Nothing to be done".

The demo runs once per pytest session (`completed_demo`, also used by tests/test_report.py); each test
works on its own copy of the finished run (file times preserved) and only dry-runs, unless it says otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from workflow_utils import REPO, SNAKEMAKE, demo_config, run_snakemake, snakemake_env

pytestmark = pytest.mark.slow

# What depends on every per-dataset x model stage: the summary, the cross-model comparison, the target rule.
DOWNSTREAM = {"summary", "compare_models", "report_tables", "all"}
# Rules that produce the embeddings (and what they are made from): never rerun by a stage's change.
EMBEDDING_RULES = {
    "make_demo_data",
    "make_world_data",
    "train_model_tiny-a",
    "prepare_dataset",
    "embed_shard",
    "merge_embeddings",
    "import_embeddings",
    "random_weights_tiny-b",
}
# The rules whose code hash includes src/clipgeom/geometry.py (rules/geometry.smk).
GEOMETRY_RULES = {"separability", "thin_shell", "covariance", "origin_distance"}
# Only the parts of a checkout that the workflow reads (copied for the code and mtime tests).
REPO_PARTS = ("Snakefile", "rules", "workflow", "config", "report", "src", "envs")
# The documented remedy for new file times (README): content-based triggers only. Not `code`: in Snakemake
# 9.27.1 the code trigger of a `script:` rule is the script's mtime; the code's content is in the params.
REMEDY_TRIGGERS = ("--rerun-triggers", "params", "input", "software-env")


# ------------------------------------------------------------------ the one demo run
def completed_demo(tmp_path_factory) -> Path:
    """A finished demo run (results/ and .snakemake/), made once per pytest session.

    The working directory holds its own config/models/tiny-clip.json (as a checkout does): the demo's
    relative `model_config` then resolves inside the working directory, so its path — an input of the
    embedding rules — does not depend on where the Snakefile lives."""
    base = tmp_path_factory.getbasetemp() / "clipgeom-demo-complete"
    done = base / ".demo-complete"
    if done.exists():
        return base
    if base.exists():
        shutil.rmtree(base)
    reuse = os.environ.get("CLIPGEOM_TEST_DEMO_RUN")
    if reuse:
        # developers: a finished demo run (made as above) to start from; it is copied and brought up to
        # date here, so a stale one costs only the jobs that changed
        copy_run(Path(reuse), base)
        run_snakemake(base, base / "demo.yaml", "--cores", "2", timeout=1800)
        done.write_text("ok\n")
        return base
    base.mkdir(parents=True)
    (base / "config" / "models").mkdir(parents=True)
    shutil.copy2(REPO / "config" / "models" / "tiny-clip.json", base / "config" / "models" / "tiny-clip.json")
    cfg = demo_config(base)
    run_snakemake(base, cfg, "--cores", "2", timeout=1800)
    done.write_text("ok\n")
    return base


def copy_run(src: Path, dst: Path) -> Path:
    """Copy a finished run, keeping file times (copy2) so that Snakemake sees the same state."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".demo-complete"))
    return dst


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    return completed_demo(tmp_path_factory)


@pytest.fixture
def run_copy(demo_run, tmp_path) -> Path:
    return copy_run(demo_run, tmp_path / "run")


@pytest.fixture
def repo_copy(tmp_path) -> Path:
    """The workflow's files copied to tmp (file times kept): its Snakefile hashes its own src/."""
    dst = tmp_path / "repo"
    dst.mkdir()
    for part in REPO_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dst / part, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        elif src.exists():
            shutil.copy2(src, dst / part)
    return dst


# ------------------------------------------------------------------ reading a dry run
def dry_run(workdir: Path, configfile: Path, *args: str, snakefile: Path | None = None) -> tuple[dict, str]:
    """`snakemake -n`: ({rule: job count} from its job table ({} when nothing is to be done), full output)."""
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(snakefile or REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "-n",
        *args,
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=snakemake_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"dry run failed: {' '.join(cmd)}\n{out[-6000:]}"
    return job_table(out), out


def job_table(output: str) -> dict[str, int]:
    """The first "Job stats:" table of Snakemake's output as {rule: count}."""
    if "Nothing to be done" in output:
        return {}
    m = re.search(r"Job stats:\n\s*job\s+count\n\s*-+\s+-+\n(.*?)\n\s*total\s+(\d+)", output, re.S)
    assert m, f"no job table in the dry run:\n{output[-4000:]}"
    jobs = {}
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2:
            jobs[parts[0]] = int(parts[1])
    assert sum(jobs.values()) == int(m.group(2))
    return jobs


def reasons(output: str) -> dict[str, set[str]]:
    """{rule: the set of its jobs' `reason:` lines} from a dry run."""
    out: dict[str, set[str]] = {}
    for rule, reason in re.findall(r"^(?:local)?rule (\S+?):\n(?:    .*\n)*?    reason: (.*)$", output, re.M):
        out.setdefault(rule, set()).add(reason.strip())
    return out


def n_pairs(workdir: Path) -> int:
    """Analysed dataset x model pairs of the run (each per-pair stage runs once per pair)."""
    n = len(list(workdir.glob("results/*/*/summary.json")))
    assert n >= 2, "the demo analyses two models"
    return n


def with_config(workdir: Path, name: str, **changes) -> Path:
    """demo.yaml of `workdir` with nested `changes` ({"stages": {"kl_matching": {...}}}) merged in."""
    cfg = yaml.safe_load((workdir / "demo.yaml").read_text())

    def merge(d, c):
        for k, v in c.items():
            if isinstance(v, dict) and isinstance(d.get(k), dict):
                merge(d[k], v)
            else:
                d[k] = v if not isinstance(v, dict) else dict(v)

    merge(cfg, changes)
    path = workdir / name
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# ------------------------------------------------------------------ tests
def test_complete_run_is_up_to_date(demo_run):
    """Baseline: straight after the run, Snakemake has nothing to do (and every target exists)."""
    jobs, out = dry_run(demo_run, demo_run / "demo.yaml")
    assert jobs == {}, f"a finished demo is not up to date:\n{out[-4000:]}"
    assert (demo_run / "results" / "comparison" / "offline-demo" / "summary_table.csv").exists()


@pytest.mark.parametrize(
    "stage,change",
    [
        ("kl_matching", {"alpha_min": -0.5, "alpha_step": 0.25}),
        ("alpha_sweep", "alpha grid"),
    ],
)
def test_stage_config_change_reruns_only_that_stage(run_copy, stage, change):
    if change == "alpha grid":
        # the alpha-sweep stage's grid keys, read from its schema (the same change whatever they are named)
        schema = yaml.safe_load((REPO / "config" / "schema" / "stages" / f"{stage}.schema.yaml").read_text())
        props = schema["properties"]
        if "alpha_step" in props:
            change = {"alpha_step": 0.25}
        elif "alphas" in props:
            change = {"alphas": [-1.0, 0.0, 1.0]}
        else:
            pytest.fail(f"{stage}'s schema has no alpha grid key: {sorted(props)}")
    cfg = with_config(run_copy, "changed.yaml", stages={stage: change})
    jobs, out = dry_run(run_copy, cfg)
    assert set(jobs) == {stage} | DOWNSTREAM, f"changing stages.{stage} reruns {jobs}:\n{out[-5000:]}"
    assert jobs[stage] == n_pairs(run_copy) == jobs["summary"]
    assert jobs["compare_models"] == 1
    assert not EMBEDDING_RULES & set(jobs)
    why = reasons(out)
    assert all(r.startswith("Params have changed") for r in why[stage]), why[stage]
    assert all("Input files updated by another job" in r for r in why["summary"]), why["summary"]


def test_embedding_batch_size_reruns_nothing(run_copy):
    """batch_size, text_batch_size and loader_workers reach embed_shard as resources: never a rerun."""
    cfg = yaml.safe_load((run_copy / "demo.yaml").read_text())
    emb = cfg["embedding"]
    cfg_path = with_config(
        run_copy,
        "bigger_batches.yaml",
        embedding={
            "batch_size": emb["batch_size"] * 4 + 3,
            "text_batch_size": emb["text_batch_size"] // 2 + 1,
            "loader_workers": emb["loader_workers"] + 1,
        },
    )
    jobs, out = dry_run(run_copy, cfg_path)
    assert jobs == {}, f"changing the embedding batch size reruns {jobs}:\n{out[-5000:]}"
    assert "Nothing to be done" in out


def test_package_code_change_reruns_the_stages_using_it(run_copy, repo_copy):
    """Edit src/clipgeom/geometry.py of a copy of the workflow: exactly the geometry stages rerun."""
    snakefile = repo_copy / "Snakefile"
    cfg = run_copy / "demo.yaml"
    # the copy of the workflow (same content, different place) sees the finished run as up to date
    jobs, out = dry_run(run_copy, cfg, snakefile=snakefile)
    assert jobs == {}, f"the same workflow from another directory reruns {jobs}:\n{out[-5000:]}"

    module = repo_copy / "src" / "clipgeom" / "geometry.py"
    module.write_text(module.read_text() + "\n# an edit: the code hash of every stage importing this changes\n")
    jobs, out = dry_run(run_copy, cfg, snakefile=snakefile)
    assert set(jobs) == GEOMETRY_RULES | DOWNSTREAM, f"editing geometry.py reruns {jobs}:\n{out[-5000:]}"
    for rule in GEOMETRY_RULES:
        assert jobs[rule] == n_pairs(run_copy)
        assert all(r.startswith("Params have changed") for r in reasons(out)[rule])
    assert not EMBEDDING_RULES & set(jobs)

    # the stage's own script counts too (Snakemake's `code` trigger and the code hash)
    module.write_text(
        module.read_text().replace("\n# an edit: the code hash of every stage importing this changes\n", "")
    )
    script = repo_copy / "workflow" / "scripts" / "kl_matching.py"
    script.write_text(script.read_text() + "\n# an edit\n")
    jobs, out = dry_run(run_copy, cfg, snakefile=snakefile)
    assert set(jobs) == {"kl_matching"} | DOWNSTREAM, f"editing kl_matching.py reruns {jobs}:\n{out[-5000:]}"


def _touch_tree(root: Path, when: float) -> int:
    n = 0
    for p in root.rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts:
            os.utime(p, (when, when))
            n += 1
    return n


def test_new_file_times_and_the_remedy(run_copy, repo_copy):
    """A fresh clone: every source and config file newer than the results, contents unchanged.

    Snakemake 9.27.1's default rerun triggers include `mtime` and `code`, and for `script:` rules the
    `code` trigger compares the *script's mtime* with the outputs' (not its content), so new file times
    alone rerun every job. The content of every script and package module a rule runs is in its params
    (`code_version`), so `--rerun-triggers params input software-env` sees no change ("Nothing to be
    done"); `snakemake --touch` once records the new times, after which the default triggers agree."""
    snakefile = repo_copy / "Snakefile"
    cfg = run_copy / "demo.yaml"
    # results made an hour ago (relative order kept), then every file of the checkout gets the time of now
    for p in (run_copy / "results").rglob("*"):
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns - 3600 * 10**9, st.st_mtime_ns - 3600 * 10**9))
    now = time.time()
    assert _touch_tree(repo_copy, now) > 50
    for f in (run_copy / "config").rglob("*"):  # the working directory's own copy of the model config
        os.utime(f, (now, now))
    os.utime(cfg, (now, now))

    # default triggers: everything reruns, and only because of file times
    jobs, out = dry_run(run_copy, cfg, snakefile=snakefile)
    all_jobs, _ = dry_run(run_copy, cfg, "--forceall", snakefile=snakefile)
    assert jobs == all_jobs, f"new file times rerun {jobs}, not every job {all_jobs}"
    why = reasons(out)
    flat = {r for rs in why.values() for r in rs}
    assert "Code has changed since last execution" in why["make_demo_data"], why["make_demo_data"]
    time_only = ("Code has changed since last execution", "Updated input files:", "Input files updated by another job:")
    assert all(any(part.strip().startswith(time_only) for part in r.split(";")) for r in flat), flat
    assert not any("Params have changed" in r or "Set of input files has changed" in r for r in flat), flat

    # Snakemake's `code` trigger is the script mtime: keeping it still reruns the script rules
    jobs, out = dry_run(run_copy, cfg, *REMEDY_TRIGGERS, "code", snakefile=snakefile)
    assert jobs and "make_demo_data" in jobs and "Code has changed" in out

    # remedy 1 (check what really changed): content-based triggers only -> nothing to be done
    jobs, out = dry_run(run_copy, cfg, *REMEDY_TRIGGERS, snakefile=snakefile)
    assert jobs == {}, f"{' '.join(REMEDY_TRIGGERS)} still reruns {jobs}:\n{out[-5000:]}"

    # remedy 2 (once, after a fresh clone or restore): `snakemake --touch`, then the defaults agree
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(snakefile),
        "--directory",
        str(run_copy),
        "--configfile",
        str(cfg),
        "--touch",
        "--cores",
        "1",
    ]
    proc = subprocess.run(cmd, cwd=run_copy, env=snakemake_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    jobs, out = dry_run(run_copy, cfg, snakefile=snakefile)
    assert jobs == {}, f"after --touch the default triggers still rerun {jobs}:\n{out[-5000:]}"
    # ... and a real change is still seen after --touch, with the default triggers and with remedy 1
    changed = with_config(run_copy, "changed.yaml", stages={"kl_matching": {"alpha_step": 0.5}})
    for extra in ((), REMEDY_TRIGGERS):
        jobs, _ = dry_run(run_copy, changed, *extra, snakefile=snakefile)
        assert set(jobs) == {"kl_matching"} | DOWNSTREAM, (extra, jobs)
