"""The workflow on a real (single-node, local) SLURM, through profiles/slurm.

The session fixture starts the cluster with tools/slurm-local.sh (installing Debian's SLURM
packages when missing) and stops it at the end if it started it. Where that cannot work — not
root, or packages missing and no apt-get — the tests are skipped; where it should work and
does not, the fixture fails, so CI sees an ERROR rather than a quiet skip.

Every snakemake run uses ``--profile profiles/slurm`` plus only the overrides a test cluster
needs (see ``slurm_args``): partition ``debug``, no account, ``squeue`` for job status (there
is no slurmdbd, so no sacct), a 2 s first status check, resources clamped to the node, and a
per-test job-name prefix so each test finds its own jobs in squeue.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "slurm-local.sh"
PROFILE = REPO / "profiles" / "slurm"
LOCAL_PROFILE = REPO / "profiles" / "local"
PARTITION = "debug"
# Parts of the repository a workflow run needs (scripts import the installed clipgeom
# package; src/ is copied too because rules hash its modules to detect code changes).
WORKFLOW_PARTS = ("Snakefile", "rules", "workflow", "config", "report", "src", "envs")


# ------------------------------------------------------------------ helpers
def base_env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["HF_HUB_OFFLINE"] = "1"
    env["MPLBACKEND"] = "Agg"
    # jobs run `python -m snakemake` (the submitting interpreter) and shell rules may call
    # python: sbatch --export=ALL hands this PATH to the job.
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def run(cmd, *, env, cwd=None, timeout=600, check=False) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(
            [str(c) for c in cmd],
            cwd=cwd,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"timed out after {timeout}s: {' '.join(map(str, cmd))}\n{out[-4000:]}")
    if check and r.returncode != 0:
        pytest.fail(f"exit {r.returncode}: {' '.join(map(str, cmd))}\n{r.stdout[-6000:]}")
    return r


def _clamp_resources(res: dict, *, cpus: int, mem_mb: int) -> dict:
    """A profile resource block made runnable on the test node."""
    out = {}
    for key, val in (res or {}).items():
        if key == "slurm_account":
            continue  # the test cluster has no accounts
        if key == "slurm_partition":
            val = PARTITION
        elif key == "cpus_per_task" and isinstance(val, int):
            val = max(1, min(val, cpus))
        elif key == "mem_mb" and isinstance(val, int):
            val = max(100, min(val, mem_mb))
        out[key] = val
    return out


def _fmt(key, val) -> str:
    return f"{key}={val}"


class Cluster:
    def __init__(self, env: dict, cpus: int, mem_mb: int):
        self.env = env
        self.cpus = cpus
        self.mem_mb = mem_mb
        # cpus_per_task from the profile is cut to half the node, so at least two jobs run
        # side by side on a small test node (nothing enforces it: task/none, no cgroups)
        self.job_cpus = max(1, cpus // 2)

    def slurm_args(self, prefix: str, jobs: int = 4) -> list[str]:
        """``--profile profiles/slurm`` plus the overrides this test cluster needs."""
        profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
        # each job may take a 1/jobs share of the node's memory, so `jobs` fit at once
        per_job_mem = max(200, self.mem_mb // max(jobs, 1))
        defaults = _clamp_resources(profile.get("default-resources") or {}, cpus=self.job_cpus, mem_mb=per_job_mem)
        defaults["slurm_partition"] = PARTITION
        args = [
            "--profile",
            PROFILE,
            "--slurm-status-command",
            "squeue",  # no slurmdbd: sacct cannot answer
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--slurm-jobname-prefix",
            prefix,  # find this test's jobs in squeue
            "--max-threads",
            str(self.cpus),  # no job may ask more CPUs than the node has
            "--jobs",
            str(jobs),
            "--default-resources",
            *[_fmt(k, v) for k, v in defaults.items()],
        ]
        per_rule = []
        for rule, res in (profile.get("set-resources") or {}).items():
            for k, v in _clamp_resources(res, cpus=self.job_cpus, mem_mb=per_job_mem).items():
                per_rule.append(f"{rule}:{_fmt(k, v)}")
        if per_rule:
            args += ["--set-resources", *per_rule]
        return [str(a) for a in args]

    def snakemake(self, workdir: Path, *extra, prefix: str, jobs: int = 4, timeout: int = 600):
        # extra (targets, --configfile ...) first: the resource lists at the end take
        # every following word
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            workdir / "Snakefile",
            *extra,
            *self.slurm_args(prefix, jobs),
        ]
        return run(cmd, env=self.env, cwd=workdir, timeout=timeout)

    def jobs_named(self, prefix: str) -> list[dict]:
        """Every job (finished ones too: MinJobAge=600) whose name starts with prefix_."""
        fmt = "%i|%j|%T|%k|%C|%m|%l|%P|%R"
        r = run(["squeue", "--states=all", "--noheader", f"--format={fmt}"], env=self.env, check=True)
        keys = ("id", "name", "state", "comment", "cpus", "mem", "time_limit", "partition", "reason")
        jobs = [dict(zip(keys, line.split("|"), strict=False)) for line in r.stdout.splitlines() if line.strip()]
        return [j for j in jobs if j["name"].startswith(prefix + "_")]


def _unique_prefix(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", name)[:20] + "-" + uuid.uuid4().hex[:6]


# ------------------------------------------------------------------ cluster fixture
@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    if not SCRIPT.is_file():
        pytest.skip(f"{SCRIPT} missing")
    if sys.platform != "linux":
        pytest.skip("the local SLURM needs Linux")
    if os.geteuid() != 0:
        pytest.skip("the local SLURM needs root (tools/slurm-local.sh installs packages and runs slurmd)")
    installed = all(
        shutil.which(b, path="/usr/sbin:/usr/bin:/sbin:/bin") for b in ("slurmctld", "slurmd", "munged", "sbatch")
    )
    if not installed and not shutil.which("apt-get"):
        pytest.skip("SLURM is not installed and there is no apt-get to install it")
    if not shutil.which("start-stop-daemon"):
        pytest.skip("start-stop-daemon (dpkg) missing")

    env0 = base_env()
    was_running = subprocess.run(["bash", SCRIPT, "status"], env=env0, capture_output=True).returncode == 0
    r = subprocess.run(["bash", SCRIPT, "start"], env=env0, text=True, capture_output=True, timeout=900)
    if r.returncode != 0:
        # root with apt-get: the cluster is supposed to work here, so this is an error, not a skip
        pytest.fail(f"tools/slurm-local.sh start failed (exit {r.returncode}):\n{r.stdout}\n{r.stderr}", pytrace=False)
    exports = dict(re.findall(r"^export (\w+)=(.*)$", r.stdout, flags=re.M))
    assert "SLURM_CONF" in exports, f"no SLURM_CONF export in:\n{r.stdout}"
    env = base_env(exports)
    info = run(["sinfo", "--noheader", "--partition", PARTITION, "--format=%c|%m"], env=env, check=True)
    cpus, mem = info.stdout.split()[0].split("|")
    yield Cluster(env, int(cpus), int(re.sub(r"\D", "", mem)))
    if not was_running:
        subprocess.run(["bash", SCRIPT, "stop"], env=env0, capture_output=True, timeout=120)


# ------------------------------------------------------------------ tiny workflows
TINY = """
SAMPLES = ["s1", "s2"]

rule all:
    input: "combined.txt"

rule hello:
    output: "hello/{sample}.txt"
    resources: mem_mb=300, runtime=7
    shell:
        "echo \\"job=$SLURM_JOB_ID partition=$SLURM_JOB_PARTITION sample={wildcards.sample}\\" > {output}"

rule combine:
    input: expand("hello/{sample}.txt", sample=SAMPLES)
    output: "combined.txt"
    threads: CPUS
    shell:
        "cat {input} > {output}; "
        "echo \\"job=$SLURM_JOB_ID cpus=$SLURM_CPUS_PER_TASK python=$(command -v python)\\" >> {output}"
"""


def test_jobs_run_through_slurm(slurm_cluster, tmp_path):
    wd = tmp_path / "wf"
    wd.mkdir()
    threads = min(2, slurm_cluster.cpus)
    (wd / "Snakefile").write_text(f"CPUS = {threads}\n" + textwrap.dedent(TINY))
    prefix = _unique_prefix("tiny")

    r = slurm_cluster.snakemake(wd, prefix=prefix, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:]
    assert "4 of 4 steps (100%) done" in r.stdout, r.stdout[-3000:]

    # outputs: each job wrote its own SLURM job id and the partition it ran in
    hello = {s: (wd / "hello" / f"{s}.txt").read_text() for s in ("s1", "s2")}
    ids = {}
    for s, text in hello.items():
        m = re.fullmatch(rf"job=(\d+) partition={PARTITION} sample={s}\n", text)
        assert m, f"hello/{s}.txt does not show a SLURM job: {text!r}"
        ids[f"hello_{s}"] = m.group(1)
    combined = (wd / "combined.txt").read_text().splitlines()
    assert combined[:2] == [hello["s1"].strip(), hello["s2"].strip()]
    m = re.fullmatch(r"job=(\d+) cpus=(\d+) python=(\S+)", combined[2])
    assert m, combined[2]
    ids["combine"] = m.group(1)
    assert int(m.group(2)) == threads  # threads -> --cpus-per-task
    assert Path(m.group(3)).parent == Path(sys.executable).parent  # venv PATH reached the job
    assert len(set(ids.values())) == 3  # three distinct SLURM jobs

    # SLURM's side: the same three jobs, completed, with the resources the rules asked for
    jobs = {j["id"]: j for j in slurm_cluster.jobs_named(prefix)}
    assert set(jobs) == set(ids.values()), (jobs, ids)
    for j in jobs.values():
        assert j["state"] == "COMPLETED", j
        assert j["partition"] == PARTITION, j
    for s in ("s1", "s2"):
        j = jobs[ids[f"hello_{s}"]]
        assert j["comment"] == f"rule_hello_wildcards_{s}", j
        assert j["mem"] == "300M" and j["time_limit"] == "7:00", j  # mem_mb / runtime
    assert jobs[ids["combine"]]["comment"] == "rule_combine"
    assert int(jobs[ids["combine"]]["cpus"]) == threads


FAILING = """
rule all:
    input: "ok.txt", "boom.txt"

rule ok:
    output: "ok.txt"
    shell: "echo job=$SLURM_JOB_ID > {output}"

rule boom:
    output: "boom.txt"
    shell: "echo 'failing on purpose' >&2; exit 1"
"""


def test_failing_job_is_reported(slurm_cluster, tmp_path):
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(textwrap.dedent(FAILING))
    prefix = _unique_prefix("fail")

    r = slurm_cluster.snakemake(wd, prefix=prefix, timeout=300)
    assert r.returncode != 0, r.stdout[-4000:]
    assert "Error in rule boom" in r.stdout, r.stdout[-4000:]
    assert re.search(r"SLURM-job '\d+' failed, SLURM status is: 'FAILED'", r.stdout), r.stdout[-4000:]
    assert "Error in rule ok" not in r.stdout
    assert not (wd / "boom.txt").exists()
    # keep-going (profile): the independent job still ran, through SLURM
    assert re.fullmatch(r"job=\d+\n", (wd / "ok.txt").read_text())

    retries = int(yaml.safe_load((PROFILE / "config.yaml").read_text()).get("retries", 0))
    jobs = slurm_cluster.jobs_named(prefix)
    boom = [j for j in jobs if j["comment"] == "rule_boom"]
    assert len(boom) == retries + 1, jobs  # the profile's retries were used
    assert all(j["state"] == "FAILED" for j in boom), boom
    assert [j["state"] for j in jobs if j["comment"] == "rule_ok"] == ["COMPLETED"], jobs


GPU = """
# like the workflow's embed_shard: the rule itself sets gpu (1 for cuda models, 0 for cpu)
DEVICE = {"cpu_model": "cpu", "cuda_model": "cuda"}

rule embed_shard:
    output: "emb/{model}.txt"
    resources: gpu=lambda wc: 1 if DEVICE[wc.model] == "cuda" else 0
    shell: "echo job=$SLURM_JOB_ID gpus=${{SLURM_GPUS:-none}} > {output}"
"""


def test_gpu_comes_from_the_rule(slurm_cluster, tmp_path):
    """profiles/slurm leaves embed_shard's gpu to the workflow: a cpu model needs no GPU
    (this CPU-only cluster runs it), a cuda model's job asks SLURM for --gpus=1."""
    wd = tmp_path / "wf"
    wd.mkdir()
    (wd / "Snakefile").write_text(textwrap.dedent(GPU))
    prefix = _unique_prefix("gpu")

    r = slurm_cluster.snakemake(wd, "emb/cpu_model.txt", prefix=prefix, timeout=300)
    assert r.returncode == 0, r.stdout[-6000:]
    assert re.fullmatch(r"job=\d+ gpus=none\n", (wd / "emb" / "cpu_model.txt").read_text())
    (job,) = slurm_cluster.jobs_named(prefix)
    assert job["state"] == "COMPLETED", job
    # the profile's set-threads reached SLURM as the job's CPUs (--max-threads clamps it to the node)
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    assert "cpus_per_task" not in str(profile.get("set-resources", "")), "CPUs come from threads only"
    want_cpus = min(profile["set-threads"]["embed_shard"], slurm_cluster.cpus)
    assert int(job["cpus"]) == want_cpus, job

    # no GPU here: SLURM refuses the submission, which names the GPU request
    r = slurm_cluster.snakemake(wd, "emb/cuda_model.txt", "--retries", "0", prefix=prefix, timeout=300)
    assert r.returncode != 0
    assert "--gpus=1" in r.stdout, r.stdout[-4000:]
    assert "Invalid generic resource" in r.stdout, r.stdout[-4000:]


# ------------------------------------------------------------------ the demo workflow
# keys (at any depth of metrics.json, or HDF5 attributes) that may differ between two runs
VOLATILE = re.compile(
    r"time|date|host|device|created|elapsed|duration|seconds|^pid$|user|node|"
    r"cwd|path|dir$|version|slurm|job_?id",
    re.I,
)


def _compare(a, b, where: str, diffs: list):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if VOLATILE.search(str(k)):
                continue
            if k not in a or k not in b:
                diffs.append(f"{where}.{k}: only in {'local' if k in a else 'slurm'}")
            else:
                _compare(a[k], b[k], f"{where}.{k}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{where}: length {len(a)} != {len(b)}")
        else:
            for i, (x, y) in enumerate(zip(a, b, strict=False)):
                _compare(x, y, f"{where}[{i}]", diffs)
    elif (
        isinstance(a, (int, float))
        and isinstance(b, (int, float))
        and not isinstance(a, bool)
        and not isinstance(b, bool)
    ):
        if not math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6):
            diffs.append(f"{where}: {a!r} != {b!r}")
    elif a != b:
        diffs.append(f"{where}: {a!r} != {b!r}")


def _h5_contents(path: Path) -> tuple[dict, dict]:
    import h5py

    arrays, attrs = {}, {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                arrays[name] = obj[()]
            for k, v in obj.attrs.items():
                attrs[f"{name}@{k}"] = v.item() if isinstance(v, np.generic) else v

        f.visititems(visit)
        for k, v in f.attrs.items():
            attrs[f"@{k}"] = v.item() if isinstance(v, np.generic) else v
    return arrays, attrs


def _compare_h5(a: Path, b: Path, where: str, diffs: list):
    arr_a, att_a = _h5_contents(a)
    arr_b, att_b = _h5_contents(b)
    if set(arr_a) != set(arr_b):
        diffs.append(f"{where}: datasets differ: {sorted(set(arr_a) ^ set(arr_b))}")
    for name in sorted(set(arr_a) & set(arr_b)):
        x, y = arr_a[name], arr_b[name]
        if x.shape != y.shape:
            diffs.append(f"{where}/{name}: shape {x.shape} != {y.shape}")
        elif x.dtype.kind in "fc":
            if not np.allclose(x, y, rtol=1e-6, atol=1e-6, equal_nan=True):
                diffs.append(f"{where}/{name}: max |diff| {np.nanmax(np.abs(x - y)):.3g}")
        elif not np.array_equal(x, y):
            diffs.append(f"{where}/{name}: values differ")
    _compare(
        {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in att_a.items()},
        {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in att_b.items()},
        f"{where}@",
        diffs,
    )


def _copy_workflow(dest: Path) -> Path:
    dest.mkdir(parents=True)
    for part in WORKFLOW_PARTS:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif src.is_file():
            shutil.copy2(src, dest / part)
    return dest


@pytest.mark.slow
def test_demo_workflow_on_slurm(request, tmp_path):
    """The demo workflow through SLURM gives the same numbers as a local run."""
    if not (REPO / "config" / "demo.yaml").is_file() or not (REPO / "Snakefile").is_file():
        pytest.skip("demo workflow not present yet")
    slurm_cluster = request.getfixturevalue("slurm_cluster")  # only now: no cluster just to skip
    local = _copy_workflow(tmp_path / "local")
    onslurm = _copy_workflow(tmp_path / "slurm")
    env = slurm_cluster.env

    r = run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            local / "Snakefile",
            "--profile",
            LOCAL_PROFILE,
            "--cores",
            "2",
            "--configfile",
            "config/demo.yaml",
        ],
        env=env,
        cwd=local,
        timeout=1200,
    )
    assert r.returncode == 0, f"local demo run failed:\n{r.stdout[-6000:]}"

    prefix = _unique_prefix("demo")
    r = slurm_cluster.snakemake(onslurm, "--configfile", "config/demo.yaml", prefix=prefix, jobs=4, timeout=1800)
    assert r.returncode == 0, f"demo on SLURM failed:\n{r.stdout[-8000:]}"
    jobs = slurm_cluster.jobs_named(prefix)
    assert jobs and all(j["state"] == "COMPLETED" for j in jobs), jobs

    metrics = sorted(p.relative_to(local) for p in (local / "results").rglob("metrics.json"))
    h5s = sorted(p.relative_to(local) for p in (local / "results").rglob("embeddings.h5"))
    assert metrics and h5s, "the local demo run wrote no metrics.json / embeddings.h5"
    assert metrics == sorted(p.relative_to(onslurm) for p in (onslurm / "results").rglob("metrics.json"))
    assert h5s == sorted(p.relative_to(onslurm) for p in (onslurm / "results").rglob("embeddings.h5"))
    diffs: list[str] = []
    for rel in metrics:
        _compare(json.loads((local / rel).read_text()), json.loads((onslurm / rel).read_text()), str(rel), diffs)
    for rel in h5s:
        _compare_h5(local / rel, onslurm / rel, str(rel), diffs)
    assert not diffs, "local and SLURM results differ:\n" + "\n".join(diffs[:50])
