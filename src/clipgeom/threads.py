"""Jobs that use exactly their threads, and do not spin on cores they do not have.

A Snakemake job gets ``threads`` cores, but torch, OpenMP, the BLAS under numpy and numba each start one
thread per *machine* core by default, and OpenMP's threads spin-wait between parallel regions. With other
jobs on the same cores that spinning starves them: measured here, the paper-scale ``alpha_sweep`` took
300 s beside other work and 70 s with ``OMP_WAIT_POLICY=PASSIVE`` (``benchmarks/bench_contention.py``).

:func:`confine` limits every thread pool a job may start to the job's ``threads``:

* environment variables read when a library loads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``,
  ``OPENBLAS_NUM_THREADS``, ``NUMBA_NUM_THREADS``, ...), and ``OMP_WAIT_POLICY=PASSIVE`` unless the user
  set a policy;
* pools already loaded (numpy's BLAS) through ``threadpoolctl``;
* torch's intra- and inter-op pools and numba's pool, now if loaded, otherwise when :func:`torch` /
  :func:`numba_threads` load them.

``clipgeom/__init__.py`` calls :func:`confine` as soon as the package is imported inside a Snakemake
``script:`` job (the ``snakemake`` object is already defined then), which is before numpy, torch or numba
load in every workflow script; :func:`clipgeom.scripting.get_job` calls it again for jobs run by hand.
"""

from __future__ import annotations

import os
import sys

ENV_THREADS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)

_state = {"threads": None, "torch_done": False}


def confine(threads: int | None) -> int | None:
    """Limit every thread pool of this process to ``threads`` (None or < 1: leave them alone).

    Returns the number applied. Idempotent; a later call with another number re-applies what can still
    change (torch's inter-op pool can be sized only once, before it is first used)."""
    if threads is None:
        return None
    n = int(threads)
    if n < 1:
        return None
    _state["threads"] = n
    for var in ENV_THREADS:
        os.environ[var] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "threadpoolctl" in sys.modules or "numpy" in sys.modules:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=n)
        except Exception:  # pragma: no cover - a BLAS threadpoolctl cannot drive
            pass
    if "torch" in sys.modules:
        _apply_torch(sys.modules["torch"], n)
    if "numba" in sys.modules:
        numba_threads(n)
    return n


def current() -> int | None:
    """The thread count :func:`confine` applied in this process, or None."""
    return _state["threads"]


def _apply_torch(torch_mod, n: int) -> None:
    torch_mod.set_num_threads(n)
    if not _state["torch_done"]:
        try:
            torch_mod.set_num_interop_threads(n)
        except RuntimeError:  # already used: it cannot change any more
            pass
        _state["torch_done"] = True


def torch():
    """``import torch`` with this job's thread limits applied (use instead of a bare import in jobs)."""
    import torch as torch_mod

    if _state["threads"]:
        _apply_torch(torch_mod, _state["threads"])
    return torch_mod


def numba_threads(n: int | None = None) -> int:
    """Size numba's pool (to ``n``, else the confined count, at most what numba started with)."""
    import numba

    n = n or _state["threads"] or numba.config.NUMBA_NUM_THREADS
    n = max(1, min(int(n), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def confine_snakemake_job() -> int | None:
    """:func:`confine` to the running Snakemake job's ``threads``, when imported inside one."""
    main = sys.modules.get("__main__")
    job = getattr(main, "snakemake", None) if main is not None else None
    threads = getattr(job, "threads", None)
    return confine(threads) if isinstance(threads, int) else None
