"""Benchmark of the paper-scale analysis DAG: every analysis stage of one imported dataset, end to end.

Writes synthetic CLIP-like raw embeddings shaped like COCO val2017 x ViT-B-32 — 5,000 images and 25,014
captions (5 per image, 14 images with a 6th), d = 512, in shuffled caption order — as an ``.npz``
(``image``, ``text``, ``text_image_index``) into a fresh temporary directory, with a config of one dataset of
``kind: embeddings`` (default stage settings), and runs

    snakemake -s <repo>/Snakefile --directory <tmp> --configfile <tmp>/config.yaml --cores 2

on every target (import_embeddings, every analysis stage of the dataset, the blur simulation, the summary
and the cross-model comparison). The embeddings resemble bench_loss.clip_like: modality means about as long
as the spread sharing a common part, a shared per-image component (every caption of an image shares it)
and anisotropic noise.

Reports the total wall time of the Snakemake process (start-up, DAG, every job; writing the input is
``setup_s``, apart), the number of jobs, the per-rule breakdown from the Snakemake ``benchmark:`` files the
rules write (jobs, seconds, peak RSS; slowest first; run_all.py's reader) plus, for rules without a
``benchmark:`` file, the seconds between their start and finish lines in Snakemake's log (1 s resolution),
the 1-minute load average before and after, and ``within_60s``.

    .venv/bin/python benchmarks/bench_dag.py --out results/bench_dag.json
    .venv/bin/python benchmarks/bench_dag.py --n-images 300 --captions 1500 --keep /tmp/dag   # smoke test

Prints one JSON object on stdout (and writes it to --out); exits 1 when the workflow failed. The machine's
load average is recorded, since other jobs sharing the cores inflate every number.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import _common  # noqa: E402
from run_all import _job_benchmarks, _run  # noqa: E402

DATASET, MODEL = "synthetic_coco", "imported"


def caption_counts(n_images: int, n_captions: int, seed: int = 0):
    """Captions per image: n_captions // n_images each, one more for (n_captions % n_images) random images."""
    import numpy as np

    if n_captions < n_images:
        raise SystemExit(f"--captions ({n_captions}) must be at least --n-images ({n_images})")
    counts = np.full(n_images, n_captions // n_images, dtype=np.int64)
    extra = np.random.default_rng(seed).choice(n_images, size=n_captions - counts.sum(), replace=False)
    counts[extra] += 1
    return counts


def clip_like_captions(n_images: int, n_captions: int, d: int, seed: int = 0):
    """(image (N_img x d), text (N_txt x d), text_image_index (N_txt,)), float32, raw (unnormalised)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    sig = rng.gamma(2.0, 0.5, size=d)
    common, mi, mt = rng.normal(size=(3, d))
    common *= 0.6 * np.linalg.norm(sig) / np.linalg.norm(common)
    mi *= 0.8 * np.linalg.norm(sig) / np.linalg.norm(mi)
    mt *= 0.8 * np.linalg.norm(sig) / np.linalg.norm(mt)
    mi, mt = common + mi, common + mt
    tii = rng.permutation(np.repeat(np.arange(n_images), caption_counts(n_images, n_captions, seed)))
    shared = np.empty((n_images, d), np.float32)
    image = np.empty((n_images, d), np.float32)
    for s in range(0, n_images, 8192):
        e = min(n_images, s + 8192)
        shared[s:e] = rng.normal(size=(e - s, d)) * sig
        image[s:e] = mi + shared[s:e] + 1.5 * rng.normal(size=(e - s, d)) * sig
    text = np.empty((n_captions, d), np.float32)
    for s in range(0, n_captions, 8192):
        e = min(n_captions, s + 8192)
        text[s:e] = mt + shared[tii[s:e]] + 1.5 * rng.normal(size=(e - s, d)) * sig
    return image, text, tii


def write_inputs(workdir: Path, n_images: int, n_captions: int, d: int) -> Path:
    import numpy as np

    image, text, tii = clip_like_captions(n_images, n_captions, d)
    np.savez(workdir / "embeddings.npz", image=image, text=text, text_image_index=tii)
    config = workdir / "config.yaml"
    config.write_text(
        "# bench_dag.py: synthetic CLIP-like embeddings shaped like COCO val2017 x ViT-B-32\n"
        "run_name: bench-dag\n"
        "datasets:\n"
        f"  {DATASET}:\n"
        "    kind: embeddings\n"
        "    path: embeddings.npz\n"
        f"    model: {MODEL}\n"
        "    logit_scale: 100.0\n"
        "stages: {}\n"
    )
    return config


_STAMP = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$")


def log_rule_seconds(log: str) -> dict:
    """Per rule from Snakemake's log: (jobs, seconds from each job's start line to its finish line)."""
    started, per_rule, stamp = {}, {}, None
    rule = None
    for line in log.splitlines():
        line = line.strip()
        m = _STAMP.match(line)
        if m:
            stamp = datetime.strptime(m.group(1).replace("  ", " "), "%a %b %d %H:%M:%S %Y")
            continue
        m = re.match(r"^(?:local)?(?:checkpoint|rule) (\S+):$", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^jobid: (\d+)$", line)
        if m and rule is not None and stamp is not None:
            started[m.group(1)] = (rule, stamp)
            rule = None
            continue
        m = re.match(r"^Finished job(?:id)?:? (\d+)", line)
        if m and stamp is not None and m.group(1) in started:
            r, t0 = started.pop(m.group(1))
            rec = per_rule.setdefault(r, {"jobs": 0, "seconds": 0.0})
            rec["jobs"] += 1
            rec["seconds"] += (stamp - t0).total_seconds()
    return per_rule


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-images", type=int, default=5000)
    ap.add_argument("--captions", type=int, default=25014, help="captions in all (COCO val2017: 25,014)")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds the workflow may run")
    ap.add_argument("--keep", default=None, metavar="DIR", help="copy the scratch directory here afterwards")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)

    out = {
        "benchmark": "analysis_dag",
        "n_images": a.n_images,
        "n_captions": a.captions,
        "d": a.d,
        "cores": a.cores,
        "dataset": {"kind": "embeddings", "name": DATASET, "model": MODEL, "stages": "defaults"},
        "machine": {**_common.machine(), "loadavg_start": _common.loadavg()},
    }
    scratch = Path(tempfile.mkdtemp(prefix="clipgeom-dag-bench-"))
    try:
        t0 = time.perf_counter()
        config = write_inputs(scratch, a.n_images, a.captions, a.d)
        out["setup_s"] = round(time.perf_counter() - t0, 2)
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "Snakefile"),
            "--directory",
            str(scratch),
            "--configfile",
            str(config),
            "--cores",
            str(a.cores),
        ]
        print(
            f"[bench_dag] {a.n_images} images, {a.captions} captions, d={a.d} in {scratch} (--cores {a.cores})",
            file=sys.stderr,
            flush=True,
        )
        load_before = _common.load1()
        rc, so, se, wall, rss = _run(cmd, cwd=scratch, timeout=a.timeout)
        log = so + se
        out["load_1min_before"], out["load_1min_after"] = load_before, _common.load1()
        out["total_wall_s"] = round(wall, 2)
        out["peak_rss_mb_largest_process"] = None if rss is None else round(rss, 1)
        m = re.search(r"(\d+) of (\d+) steps \(100%\) done", log)
        out["jobs"] = int(m.group(2)) if m else None
        out["status"] = "ok" if rc == 0 else "timeout" if rc is None else "failed"
        if rc != 0:
            out["returncode"] = rc
            out["log_tail"] = log[-4000:]
        bench = _job_benchmarks(scratch)
        from_log = log_rule_seconds(log)
        rules = [{"rule": r, **v, "source": "benchmark"} for r, v in bench.items()]
        rules += [
            {"rule": r, "jobs": v["jobs"], "seconds": round(v["seconds"], 1), "max_rss_mb": None, "source": "log"}
            for r, v in from_log.items()
            if r not in bench and r != "all"
        ]
        rules.sort(key=lambda r: -r["seconds"])
        out["per_rule"] = rules
        out["sum_rule_seconds"] = round(sum(r["seconds"] for r in rules), 2)
        if bench:
            out["peak_rss_mb_jobs"] = max(r["max_rss_mb"] for r in bench.values())
        out["within_60s"] = bool(rc == 0 and wall <= 60)
        out["summary"] = {
            "total_wall_s": out["total_wall_s"],
            "jobs": out["jobs"],
            "within_60s": out["within_60s"],
            "slowest_rule": rules[0]["rule"] if rules else None,
            "slowest_rule_seconds": rules[0]["seconds"] if rules else None,
            "sum_rule_seconds": out["sum_rule_seconds"],
            "peak_rss_mb_jobs": out.get("peak_rss_mb_jobs"),
            "setup_s": out["setup_s"],
        }
    finally:
        if a.keep:
            shutil.copytree(scratch, a.keep, dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    out["machine"]["loadavg_end"] = _common.loadavg()
    text = json.dumps(out, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    if out.get("status") != "ok":
        sys.exit(1)
    return out


if __name__ == "__main__":
    main()
