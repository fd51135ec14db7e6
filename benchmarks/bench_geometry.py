"""Benchmark the geometry stages (separability, thin_shell, covariance, origin_distance) at scale.

For each size N (rows per modality, d = 512 by default) it writes a synthetic embeddings.h5 — a
double ellipsoid: offset means, a decaying per-feature spread and a low-rank correlated part,
generated and written in chunks so that generation never holds the data in memory — into a
temporary directory, then runs every stage in its own subprocess and reports the wall time and
the peak resident memory of that subprocess (``os.wait4`` rusage, i.e. ``ru_maxrss`` of the child).
The temporary files are deleted afterwards.

Modes (``--mode``):
  script   the stage's workflow script as Snakemake runs it (computation + metrics.json + CSV +
           figures), invoked by hand through ``clipgeom.scripting.get_job``'s command line;
  compute  only ``clipgeom.stages.geometry.compute_<stage>`` (no writing, no plotting).

Usage::

    python benchmarks/bench_geometry.py --sizes 25000 250000 --out bench.json
    python benchmarks/bench_geometry.py --sizes 1000000 --stages thin_shell covariance

Prints one JSON document on stdout (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
STAGES = ("separability", "thin_shell", "covariance", "origin_distance")
FIGURES = {
    "separability": ("sorted", "mean_std", "hist", "svm"),
    "thin_shell": ("features", "norms"),
    "covariance": ("variance", "odd", "spectrum", "whitening"),
    "origin_distance": ("origin", "root"),
}


def stage_params() -> dict:
    """Every stage's config block with the schema defaults."""
    sys.path.insert(0, str(REPO / "src"))
    from clipgeom.config import validate_config

    cfg = {"datasets": {"bench": {"kind": "demo"}}, "models": {"bench": {"arch": "bench"}}}
    validate_config(cfg, REPO / "config" / "schema")
    return {s: cfg["stages"][s] for s in STAGES}


def write_synthetic(path: Path, n: int, d: int, seed: int = 0, chunk: int = 65536, rank: int = 16) -> float:
    """A synthetic double ellipsoid written in chunks in the embeddings.h5 schema; returns seconds."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    str_dt = h5py.string_dtype(encoding="utf-8")
    with h5py.File(path, "w") as f:
        for k, mod in enumerate(("image", "text")):
            scale = np.geomspace(1.0, 0.05, d) * rng.uniform(0.8, 1.2, d)
            mean = rng.normal(0.0, 1.0, d) * np.linalg.norm(scale) / np.sqrt(d)
            mix = rng.normal(0.0, 0.3 / np.sqrt(rank), (rank, d))
            g = f.create_group(mod)
            ds = g.create_dataset("embedding", shape=(n, d), dtype=np.float32, chunks=(min(n, 4096), d))
            for start in range(0, n, chunk):
                m = min(chunk, n - start)
                z = rng.standard_normal((m, d), dtype=np.float32)
                x = mean + z * scale + rng.standard_normal((m, rank), dtype=np.float32) @ mix
                ds[start : start + m] = x.astype(np.float32)
            g.create_dataset("id", data=np.arange(n, dtype=np.int64) + k * n)
            if mod == "image":
                g.create_dataset("file", data=np.full(n, "", dtype=object), dtype=str_dt)
        f["text"].create_dataset("image_index", data=np.arange(n, dtype=np.int64))
        f["text"].create_dataset("caption", data=np.full(n, "", dtype=object), dtype=str_dt)
        for key, val in {
            "normalized": False,
            "schema_version": 1,
            "embed_dim": d,
            "model": "synthetic",
            "pretrained": "none",
            "logit_scale": 100.0,
            "dataset": "bench",
        }.items():
            f.attrs[key] = val
    return time.perf_counter() - t0


# Runs a stage in the measured child and, at exit, writes the child's own peak RSS (VmHWM of
# /proc/self/status: the high-water mark of this process image only) to $BENCH_HWM_FILE.
# (ru_maxrss is kept too, but Linux carries the pre-exec high-water mark of the forking parent
# into it, so it can only over-state a small child's peak.)
_WRAPPER = """
import atexit, os, runpy, sys
def _hwm():
    try:
        for line in open('/proc/self/status'):
            if line.startswith('VmHWM:'):
                open(os.environ['BENCH_HWM_FILE'], 'w').write(line.split()[1])
    except OSError:
        pass
atexit.register(_hwm)
mode, target = sys.argv[1], sys.argv[2]
if mode == 'script':
    sys.argv = [target] + sys.argv[3:]
    runpy.run_path(target, run_name='__main__')
else:
    import json
    from clipgeom.stages import geometry
    getattr(geometry, 'compute_' + target)(sys.argv[3], json.loads(sys.argv[4]))
"""


def run_measured(cmd: list[str], env: dict, log_path: Path) -> dict:
    """Run ``cmd`` (a _WRAPPER command); wall time, the child's peak RSS and CPU times."""
    hwm = log_path.with_suffix(".hwm")
    env = dict(env, BENCH_HWM_FILE=str(hwm))
    with open(log_path, "w") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    rc = os.waitstatus_to_exitcode(status)
    peak = int(hwm.read_text()) / 1024.0 if hwm.exists() else usage.ru_maxrss / 1024.0
    res = {
        "wall_s": round(wall, 3),
        "peak_rss_mb": round(peak, 1),
        "ru_maxrss_mb": round(usage.ru_maxrss / 1024.0, 1),
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "rc": rc,
    }
    if rc != 0:
        res["log_tail"] = log_path.read_text()[-2000:]
    return res


def stage_command(stage: str, mode: str, h5: Path, outdir: Path, p: dict) -> list[str]:
    if mode == "compute":
        return [sys.executable, "-c", _WRAPPER, "compute", stage, str(h5), json.dumps(p)]
    outs = [f"metrics={outdir / 'metrics.json'}", f"values={outdir / 'values.csv'}"]
    for fig in FIGURES[stage]:
        outs += [f"{fig}_png={outdir / (fig + '.png')}", f"{fig}_pdf={outdir / (fig + '.pdf')}"]
    return [
        sys.executable,
        "-c",
        _WRAPPER,
        "script",
        str(REPO / "workflow" / "scripts" / f"{stage}.py"),
        "--input",
        f"embeddings={h5}",
        "--output",
        *outs,
        "--params",
        json.dumps({"p": p, "demo": False}),
        "--wildcards",
        "dataset=bench",
        "model=synthetic",
        "--log",
        str(outdir / "stage.log"),
    ]


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_generate":  # internal: python bench_geometry.py --_generate PATH N D SEED
        write_synthetic(Path(argv[1]), int(argv[2]), int(argv[3]), seed=int(argv[4]))
        return {}
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[25000, 250000, 1000000],
        help="rows per modality (default: 25000 250000 1000000)",
    )
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    ap.add_argument("--mode", choices=("script", "compute"), default="script")
    ap.add_argument("--tmpdir", default=None, help="where the synthetic files go (default: system temp)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)

    params = stage_params()
    env = dict(os.environ, MPLBACKEND="Agg", HF_HUB_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    report = {
        "benchmark": "geometry stages",
        "mode": a.mode,
        "dim": a.dim,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_avg_at_start": list(os.getloadavg()),
        },
        "params": params,
        "results": [],
    }
    for n in a.sizes:
        work = Path(tempfile.mkdtemp(prefix=f"bench_geometry_{n}_", dir=a.tmpdir))
        try:
            h5 = work / "embeddings.h5"
            # generated in a child process, so that this process stays small (see _WRAPPER)
            t0 = time.perf_counter()
            subprocess.run(
                [sys.executable, __file__, "--_generate", str(h5), str(n), str(a.dim), str(a.seed)], check=True, env=env
            )
            gen_s = time.perf_counter() - t0
            entry = {
                "n_per_modality": n,
                "file_mb": round(h5.stat().st_size / 2**20, 1),
                "data_mb_float32": round(2 * n * a.dim * 4 / 2**20, 1),
                "generate_s": round(gen_s, 2),
                "stages": {},
            }
            print(f"N = {n}: file written in {gen_s:.1f} s", file=sys.stderr)
            for stage in a.stages:
                outdir = work / stage
                outdir.mkdir()
                r = run_measured(stage_command(stage, a.mode, h5, outdir, params[stage]), env, work / f"{stage}.out")
                r["load_avg_after"] = round(os.getloadavg()[0], 2)
                entry["stages"][stage] = r
                print(
                    f"  {stage}: {r['wall_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, rc {r['rc']}", file=sys.stderr
                )
            report["results"].append(entry)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return report


if __name__ == "__main__":
    main()
