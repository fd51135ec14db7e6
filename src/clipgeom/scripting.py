"""Glue for the thin scripts in ``workflow/scripts``.

A script calls :func:`get_job` and gets an object with ``input``, ``output``,
``params``, ``wildcards``, ``log``, ``threads`` and ``resources`` — the real
``snakemake`` object when Snakemake runs it, or one built from the command line
when a user runs the script by hand for debugging::

    python workflow/scripts/thin_shell.py \\
        --input embeddings=results/demo/tiny-a/embeddings.h5 \\
        --output metrics=/tmp/m.json --params '{"bins": 60}'

Logging goes to the rule's log file (and stderr). An exception that ends the script is
written to the log too — its message first, then the traceback — so that the log Snakemake
points at after a failure (the only output left on a cluster) holds the error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

from clipgeom.threads import confine


class _Named(SimpleNamespace):
    """Attribute and item access, like Snakemake's Namedlist."""

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else list(vars(self).values())[key]

    def get(self, key, default=None):
        return getattr(self, key, default)

    def keys(self):
        return vars(self).keys()


def _pairs(items):
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"expected KEY=VALUE, got {item!r}")
        out[key] = value
    return out


def get_job(namespace: dict | None = None):
    """The running ``snakemake`` object, or one parsed from ``sys.argv``."""
    ns = namespace if namespace is not None else sys.modules["__main__"].__dict__
    if "snakemake" in ns:
        confine(getattr(ns["snakemake"], "threads", None))  # already done at import; cheap to repeat
        return ns["snakemake"]
    p = argparse.ArgumentParser(description="Run one workflow script outside Snakemake.")
    p.add_argument("--input", nargs="*", default=[], metavar="KEY=PATH")
    p.add_argument("--output", nargs="*", default=[], metavar="KEY=PATH")
    p.add_argument("--params", default="{}", help="JSON object of params")
    p.add_argument("--wildcards", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--log", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resources", default="{}", help="JSON object of resources")
    a = p.parse_args()
    confine(a.threads)
    return SimpleNamespace(
        input=_Named(**_pairs(a.input)),
        output=_Named(**_pairs(a.output)),
        params=_Named(**json.loads(a.params)),
        wildcards=_Named(**_pairs(a.wildcards)),
        log=[a.log] if a.log else [],
        threads=a.threads,
        resources=_Named(**json.loads(a.resources)),
    )


def setup_logging(job, name: str = "clipgeom") -> logging.Logger:
    """Log to the job's log file (first log entry) and to stderr."""
    handlers = [logging.StreamHandler(sys.stderr)]
    logs = list(job.log) if job.log else []
    if logs:
        handlers.append(logging.FileHandler(str(logs[0]), mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    sys.excepthook = _log_uncaught
    return logging.getLogger(name)


def _log_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook: the error's message and traceback into the job's log (and stderr)."""
    log = logging.getLogger("clipgeom")
    if issubclass(exc_type, KeyboardInterrupt):
        log.error("interrupted")
        return
    log.error("%s: %s", exc_type.__name__, exc)
    log.error("traceback (most recent call last):\n%s", "".join(traceback.format_exception(exc_type, exc, tb)).rstrip())
    removed = remove_corrupt_output(exc)
    if removed:
        log.error("removed the unreadable file %s, so that the next run rebuilds it", removed)
    for h in logging.getLogger().handlers:
        h.flush()


def remove_corrupt_output(exc: BaseException) -> str | None:
    """Delete the file an exception marks as corrupt (``exc.path``, ``exc.corrupt``) when it is
    a workflow output under ``results/`` of the working directory; never a user's own file."""
    path = getattr(exc, "path", None)
    if not path or not getattr(exc, "corrupt", False):
        return None
    p = Path(path).resolve()
    results = (Path.cwd() / "results").resolve()
    if results not in p.parents or not p.is_file():
        return None
    os.unlink(p)
    return str(path)


def log_stream(job=None):
    """The open stream of the job's log file (for progress bars), or stderr."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            return h.stream
    return sys.stderr
