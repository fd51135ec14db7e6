"""Benchmark of exact conformity (Eq. 10).

1. N = 25,000 caption-like vectors, d = 512: the O(N·d) identity
   C_j = v̂_j·(Σ_k v̂_k − v̂_j)/(N−1) (clipgeom.conformity.conformity) against the O(N²·d) pairwise
   computation (float64 cosine matrix in row blocks, diagonal removed). Both timed, values compared.
2. 1,000,000 × 512 vectors in a chunked embeddings.h5 (synthetic, written block by block into a temp
   dir, deleted afterwards), streamed in two passes over clipgeom.h5io.iter_embedding_chunks
   (pass 1: unit-vector sum, pass 2: conformity per chunk); peak RSS measured in a fresh subprocess.

    .venv/bin/python benchmarks/bench_conformity.py --out results/bench_conformity.json

Prints one JSON object on stdout (and writes it to --out).
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

import numpy as np

from clipgeom import conformity as cf


def clip_like(n: int, d: int, seed: int, rng=None) -> np.ndarray:
    """Raw caption-like vectors: a common offset plus anisotropic noise (float32, like encoder output)."""
    rng = rng or np.random.default_rng(seed)
    base = np.random.default_rng(seed)
    mean = base.normal(size=d)
    mean *= 1.4 * np.sqrt(d) / np.linalg.norm(mean)
    scale = base.gamma(1.0, 1.0, size=d)
    return (mean + rng.normal(size=(n, d)) * scale).astype(np.float32)


def pairwise_conformity(x: np.ndarray, block: int = 2048) -> np.ndarray:
    """Eq. 10 the O(N²·d) way: float64 cosine matrix in row blocks, self-similarity removed."""
    u = x.astype(np.float64)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    n = len(u)
    out = np.empty(n)
    for s in range(0, n, block):
        sims = u[s : s + block] @ u.T  # (b, N) cosines
        rows = np.arange(sims.shape[0])
        sims[rows, s + rows] = 0.0  # drop k = j
        out[s : s + block] = sims.sum(axis=1) / (n - 1)
    return out


def bench_in_memory(n: int, d: int, repeats: int) -> dict:
    x = clip_like(n, d, seed=0)
    fast_times, fast_cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fast = cf.conformity(x)
        fast_times.append(time.perf_counter() - t0)
        fast_cpu.append(time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    slow = pairwise_conformity(x)
    slow_time, slow_cpu = time.perf_counter() - t0, time.process_time() - c0
    t_fast = min(fast_times)
    return {
        "n": n,
        "d": d,
        "identity_seconds": t_fast,
        "identity_seconds_all": fast_times,
        "identity_cpu_seconds": min(fast_cpu),
        "pairwise_seconds": slow_time,
        "pairwise_cpu_seconds": slow_cpu,
        "pairwise_method": "float64 unit rows, cosine matrix in blocks of 2048 rows (BLAS), diagonal removed",
        "speedup": slow_time / t_fast,
        "speedup_cpu": slow_cpu / min(fast_cpu),
        "max_abs_diff": float(np.max(np.abs(fast - slow))),
        "agree_to_1e-9": bool(np.max(np.abs(fast - slow)) <= 1e-9),
        "mean_conformity": float(fast.mean()),
    }


def write_big_h5(path: Path, n: int, d: int, chunk_rows: int) -> float:
    """A text-only embeddings file (the datasets iter_embedding_chunks reads), written block by block."""
    import h5py

    t0 = time.perf_counter()
    rng = np.random.default_rng(1)
    with h5py.File(path, "w") as f:
        f.create_dataset("image/embedding", shape=(0, d), dtype=np.float32)
        ds = f.create_dataset("text/embedding", shape=(n, d), dtype=np.float32, chunks=(min(4096, n), d))
        for s in range(0, n, chunk_rows):
            e = min(s + chunk_rows, n)
            ds[s:e] = clip_like(e - s, d, seed=2, rng=rng)
        f.create_dataset("text/id", data=np.arange(n, dtype=np.int64))
        f.attrs["normalized"] = False
        f.attrs["schema_version"] = 1
    return time.perf_counter() - t0


_CHILD = r"""
import json, sys, time
import numpy as np
path, chunk_rows, n_check = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def hwm_kb():
    # VmHWM: peak resident set of this process image (ru_maxrss would carry the parent's peak over exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from clipgeom import conformity as cf
from clipgeom.h5io import iter_embedding_chunks
base_kb = hwm_kb()
src = lambda: iter_embedding_chunks(path, "text", chunk_rows)
t0 = time.perf_counter()
conf, cos_m, sums = cf.conformity_and_cosine(src)
elapsed = time.perf_counter() - t0
peak_kb = hwm_kb()
# spot check a few rows against a streamed pairwise sum over all N rows
rows = np.random.default_rng(0).choice(len(conf), n_check, replace=False)
picked, start = {}, 0
for chunk in src():
    for r in rows:
        if start <= r < start + len(chunk):
            picked[int(r)] = chunk[r - start] / np.linalg.norm(chunk[r - start])
    start += len(chunk)
q = np.stack([picked[int(r)] for r in rows])
acc = np.zeros(n_check)
for chunk in src():
    acc += (q @ (chunk / np.linalg.norm(chunk, axis=1, keepdims=True)).T).sum(axis=1)
check = (acc - 1.0) / (len(conf) - 1)
print(json.dumps({
    "rows": int(len(conf)), "seconds": elapsed,
    "peak_rss_mb_after_imports": base_kb / 1024, "peak_rss_mb": peak_kb / 1024,
    "rss_source": "VmHWM of /proc/self/status in a fresh subprocess",
    "spot_check_rows": n_check, "spot_check_max_abs_diff": float(np.max(np.abs(check - conf[rows]))),
    "mean_conformity": float(conf.mean()),
}))
"""


def bench_streamed(n: int, d: int, chunk_rows: int, tmp_root: str | None) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_conformity_", dir=tmp_root))
    try:
        path = tmp / "embeddings.h5"
        write_s = write_big_h5(path, n, d, chunk_rows)
        size = path.stat().st_size
        res = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path), str(chunk_rows), "8"], capture_output=True, text=True
        )
        if res.returncode != 0:
            raise RuntimeError(f"streamed benchmark child failed:\n{res.stderr[-4000:]}")
        out = json.loads(res.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    out.update(
        {
            "n": n,
            "d": d,
            "chunk_rows": chunk_rows,
            "file_mb": size / 2**20,
            "write_seconds": write_s,
            "full_array_mb_float32": n * d * 4 / 2**20,
            "full_array_mb_float64": n * d * 8 / 2**20,
            "temp_dir_removed": not tmp.exists(),
        }
    )
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=25_000, help="rows of the in-memory comparison")
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5, help="timings of the identity (best is reported)")
    ap.add_argument("--big-n", type=int, default=1_000_000, help="rows of the streamed file (0 skips it)")
    ap.add_argument("--chunk-rows", type=int, default=16_384)
    ap.add_argument("--tmp-dir", default=None, help="where the temporary h5 goes (default: system temp)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    a = ap.parse_args(argv)
    result = {
        "benchmark": "conformity",
        "load_average_at_start": os.getloadavg(),
        "machine": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "in_memory": bench_in_memory(a.n, a.d, a.repeats),
    }
    if a.big_n > 0:
        result["streamed"] = bench_streamed(a.big_n, a.d, a.chunk_rows, a.tmp_dir)
    text = json.dumps(result, indent=2)
    print(text)
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
