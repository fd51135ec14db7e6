"""The one list of rejected items: ``results/{dataset}/{model}/rejected.csv``.

Whoever rejects an item — ``prepare_dataset`` (bad rows, missing or unsafe files, duplicate ids),
``embed_shard`` (images that fail to decode), ``merge_embeddings`` / ``import_embeddings``
(non-finite or zero-norm rows, captions of a rejected image) — the entry reaches the embeddings
file's ``rejects`` attribute, and from there this CSV, one row per item with its reason.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

COLUMNS = ("stage", "kind", "item", "reason")


def write_rejected(path: str | os.PathLike, rejects: Iterable[Mapping]) -> None:
    """One row per rejected item (columns stage, kind, item, reason); a header only when none."""
    from .outputs import write_csv

    rows = list(rejects)
    write_csv(path, {c: [str(r.get(c, "")) for r in rows] for c in COLUMNS})
