"""Atomic file writing: the one helper every writer of a final output goes through.

A writer writes ``.{name}.tmp-{pid}`` beside the final file and renames it only when the
file is complete, so a file with the final name is never partial::

    with atomic_path("results/x/embeddings.h5") as tmp:
        with h5py.File(tmp, "w") as f:
            ...
    # renamed to results/x/embeddings.h5 here; on an exception the temporary file is removed

Before writing, stale ``.{name}.tmp-{pid}`` siblings of the same final name whose process is no
longer alive (left by a killed writer) are removed.  A temporary file whose pid is alive on this
host is left alone (it may be another writer's work in progress), and so is any name whose suffix
is not a pid.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


def tmp_name(final: str | os.PathLike, pid: int | None = None) -> Path:
    """The temporary name this process (or ``pid``) writes ``final`` under."""
    final = Path(final)
    return final.with_name(f".{final.name}.tmp-{os.getpid() if pid is None else pid}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def remove_stale_tmp(final: str | os.PathLike) -> list[Path]:
    """Remove ``.{name}.tmp-{pid}`` siblings of ``final`` whose pid is not alive; return them."""
    final = Path(final)
    removed = []
    if not final.parent.is_dir():
        return removed
    prefix = f".{final.name}.tmp-"
    for p in final.parent.iterdir():
        if not p.name.startswith(prefix):
            continue
        suffix = p.name[len(prefix) :]
        if not suffix.isdigit() or int(suffix) == os.getpid() or pid_alive(int(suffix)):
            continue
        try:
            p.unlink()
        except FileNotFoundError:
            continue
        except IsADirectoryError:
            continue
        log.warning("removed stale temporary file %s (left by process %s, no longer running)", p, suffix)
        removed.append(p)
    return removed


@contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield the temporary path to write; rename it to ``final`` on success, remove it on error.

    Creates the parent folder and removes stale temporary siblings first.  If the body leaves
    no file at the temporary path, nothing is renamed and ``FileNotFoundError`` is raised.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(final)
    tmp = tmp_name(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def write_text(final: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_text(text)
    return Path(final)


def write_bytes(final: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``final`` atomically."""
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)
