"""Helpers the benchmark scripts share: the load average, the machine, waiting for a quiet machine.

Not a benchmark (``run_all.py`` runs ``bench_*.py`` only). Import it from a script in this folder with::

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _common

Every figure a benchmark reports should carry the 1-minute load average at which it was taken:
other work sharing the cores inflates wall times (and, with spinning OpenMP threads, CPU times too).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Callable

# Snakemake sets these to the job's `threads:` for every shell/script job (snakemake/shell.py).
SNAKEMAKE_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def load1() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):
        return None


def loadavg() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def machine() -> dict:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "processor": platform.processor() or platform.machine(),
    }


def settle(
    max_load: float,
    settle_s: float,
    poll_s: float = 5.0,
    *,
    getload: Callable[[], float | None] = load1,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[float | None, float]:
    """Wait (polling every `poll_s`) until the 1-minute load average is at most `max_load`, for at most
    `settle_s` seconds. Returns (the load average when it stopped waiting, seconds waited)."""
    t0 = clock()
    load = getload()
    while load is not None and load > max_load:
        left = settle_s - (clock() - t0)
        if left <= 0:
            break
        sleep(min(poll_s, left))
        load = getload()
    return load, round(clock() - t0, 1)


def workflow_env(threads: int, base: dict | None = None) -> dict:
    """The environment Snakemake gives a job with `threads:` = threads (its thread variables set)."""
    env = dict(os.environ if base is None else base)
    for k in SNAKEMAKE_THREAD_VARS:
        env[k] = str(threads)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("MPLBACKEND", "Agg")
    return env
