"""sha256 in one place: of bytes, of a binary stream and of a file (hex digests).

Used for the manifest's checksum and the caption files (:mod:`clipgeom.data`), checkpoints and image
bytes (:mod:`clipgeom.embed`) and imported embedding files (:mod:`clipgeom.imported`).
"""

from __future__ import annotations

import hashlib
import os

#: bytes read at a time when hashing a stream
CHUNK_BYTES = 1 << 20


def sha256_hex(data: bytes) -> str:
    """sha256 (hex) of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_stream(fh, chunk: int = CHUNK_BYTES) -> str:
    """sha256 (hex) of what is left to read from the binary file object ``fh``, read ``chunk`` bytes at a time."""
    h = hashlib.sha256()
    for block in iter(lambda: fh.read(chunk), b""):
        h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK_BYTES) -> str:
    """sha256 (hex) of the file at ``path``, read as a stream."""
    with open(path, "rb") as fh:
        return sha256_stream(fh, chunk)
