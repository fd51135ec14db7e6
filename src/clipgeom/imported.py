"""Importing precomputed embeddings (the ``embeddings`` dataset kind).

Accepted files:
- ``.npz`` with arrays ``image`` (N_img x d), ``text`` (N_txt x d) and optional
  ``text_image_index`` (N_txt,; default: caption j belongs to image j, which needs N_img == N_txt);
- ``.npy`` of shape (2, N, d): ``[0]`` images, ``[1]`` captions, row i of each a pair;
- ``.h5`` in this project's own schema (see :mod:`clipgeom.h5io`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .data import sha256_file
from .h5io import Embeddings, EmbeddingsFileError, check_finite, read_embeddings

log = logging.getLogger(__name__)


def _pairs(image: np.ndarray, text: np.ndarray, tii: np.ndarray | None, source: str) -> Embeddings:
    if image.ndim != 2 or text.ndim != 2:
        raise EmbeddingsFileError(f"{source}: 'image' and 'text' must be 2-D, got {image.shape} and {text.shape}")
    if image.shape[1] != text.shape[1]:
        raise EmbeddingsFileError(f"{source}: image embeddings have width {image.shape[1]} but text "
                                  f"embeddings have width {text.shape[1]}")
    check_finite("image", image, source)
    check_finite("text", text, source)
    if tii is None:
        if len(image) != len(text):
            raise EmbeddingsFileError(f"{source}: {len(image)} images but {len(text)} captions and no "
                                      "'text_image_index' to pair them")
        tii = np.arange(len(text))
    tii = np.asarray(tii).astype(np.int64)
    if tii.shape != (len(text),):
        raise EmbeddingsFileError(f"{source}: 'text_image_index' has shape {tii.shape}, expected ({len(text)},)")
    n = len(image)
    return Embeddings(
        image=image.astype(np.float32), text=text.astype(np.float32),
        image_id=np.arange(n), image_file=np.asarray([""] * n, dtype=object),
        text_id=np.arange(len(text)), text_image_index=tii,
        caption=np.asarray([""] * len(text), dtype=object), attrs={},
    )


def import_embeddings(path: str | os.PathLike, *, dataset: str, model: str, logit_scale: float) -> Embeddings:
    """Read a precomputed embeddings file into an :class:`Embeddings` with provenance attrs."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings file to import not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            for key in ("image", "text"):
                if key not in z:
                    raise EmbeddingsFileError(f"{path}: missing array '{key}' (has {sorted(z.files)})")
            emb = _pairs(z["image"], z["text"], z["text_image_index"] if "text_image_index" in z else None, str(path))
    elif suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
        if arr.ndim != 3 or arr.shape[0] != 2:
            raise EmbeddingsFileError(f"{path}: expected shape (2, N, d), got {arr.shape}")
        emb = _pairs(arr[0], arr[1], None, str(path))
    elif suffix in (".h5", ".hdf5"):
        emb = read_embeddings(path)
        check_finite("/image/embedding", emb.image, str(path))
        check_finite("/text/embedding", emb.text, str(path))
    else:
        raise EmbeddingsFileError(f"{path}: unknown embeddings format (use .npz, .npy or .h5)")
    norms = np.concatenate([np.linalg.norm(emb.image, axis=1), np.linalg.norm(emb.text, axis=1)])
    unit = bool(norms.size and np.allclose(norms, 1.0, atol=1e-3))
    if unit:
        log.warning("%s: every row has unit norm: these are NORMALISED embeddings; raw norms are lost, "
                    "so norm-based results (thin shell, distance from origin) describe the sphere, not CLIP", path)
    attrs = dict(emb.attrs)
    attrs.update({
        "model": model, "pretrained": attrs.get("pretrained", "imported"), "dataset": dataset,
        "logit_scale": float(logit_scale), "normalized": unit, "source_file": str(path),
        "input_checksum": sha256_file(path), "imported": True,
        "embed_dim": int(emb.image.shape[1] if emb.image.size else emb.text.shape[1]),
    })
    emb.attrs = attrs
    return emb
