"""The project's embeddings file: one HDF5 file per dataset x model.

Schema (``results/{dataset}/{model}/embeddings.h5``)::

    /image/embedding   float32 (N_img, d)   raw encoder output, NOT normalised
    /image/id          int64 or utf-8 (N_img,)
    /image/file        utf-8 (N_img,)        file name inside the dataset ("" when unknown)
    /text/embedding    float32 (N_txt, d)   raw encoder output, NOT normalised
    /text/id           int64 or utf-8 (N_txt,)
    /text/image_index  int64 (N_txt,)        row of the caption's image in /image (-1: none)
    /text/caption      utf-8 (N_txt,)
    attrs: model, pretrained, logit_scale, embed_dim, open_clip_version,
           torch_version, precision, device, normalized (False), dataset,
           input_checksum, schema_version, ...

Either modality may have zero rows (an external set of generated captions has
no images).  Every writer goes through :func:`write_embeddings`, which writes
under a temporary name and renames only when the file is complete, so a file
with the final name is never partial.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

SCHEMA_VERSION = 1
MODALITIES = ("image", "text")
_STR = h5py.string_dtype(encoding="utf-8")


class EmbeddingsFileError(ValueError):
    """An embeddings file (or array) breaks the schema; the message names file and key."""


@dataclass
class Embeddings:
    """All of one embeddings file in memory."""

    image: np.ndarray
    text: np.ndarray
    image_id: np.ndarray
    image_file: np.ndarray
    text_id: np.ndarray
    text_image_index: np.ndarray
    caption: np.ndarray
    attrs: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return int(self.image.shape[1] if self.image.size else self.text.shape[1])

    @property
    def logit_scale(self) -> float:
        return float(self.attrs.get("logit_scale", 100.0))

    def first_caption_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """One caption per image: the first caption of each image in file (annotation) order.

        Returns ``(image_rows, text_rows)`` of equal length, sorted by image row;
        images without any caption are left out.
        """
        idx = self.text_image_index
        valid = np.flatnonzero(idx >= 0)
        # np.unique returns the first occurrence index of each image row
        img_rows, first = np.unique(idx[valid], return_index=True)
        return img_rows.astype(np.int64), valid[first].astype(np.int64)


def _as_id_array(ids) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64)
    if arr.dtype.kind == "O" and all(isinstance(x, (int, np.integer)) for x in arr.tolist()):
        return arr.astype(np.int64)
    return np.asarray([str(x) for x in arr.tolist()], dtype=object)


def check_finite(name: str, arr: np.ndarray, source: str) -> None:
    """Raise naming the first non-finite row, or do nothing."""
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise EmbeddingsFileError(
            f"{source}: {name} has {int(bad.sum())} NaN/inf value(s); first in row {row}"
        )


def validate_arrays(emb: Embeddings, source: str = "<memory>") -> None:
    """Check shapes, widths, pairing indices and finiteness; raise naming what is wrong."""
    for mod in MODALITIES:
        arr = getattr(emb, mod)
        if arr.ndim != 2:
            raise EmbeddingsFileError(f"{source}: /{mod}/embedding must be 2-D, got shape {arr.shape}")
        check_finite(f"/{mod}/embedding", arr, source)
    if emb.image.shape[0] and emb.text.shape[0] and emb.image.shape[1] != emb.text.shape[1]:
        raise EmbeddingsFileError(
            f"{source}: image embeddings have width {emb.image.shape[1]} but text embeddings "
            f"have width {emb.text.shape[1]}"
        )
    n_img, n_txt = emb.image.shape[0], emb.text.shape[0]
    for name, arr, n in (
        ("/image/id", emb.image_id, n_img),
        ("/image/file", emb.image_file, n_img),
        ("/text/id", emb.text_id, n_txt),
        ("/text/image_index", emb.text_image_index, n_txt),
        ("/text/caption", emb.caption, n_txt),
    ):
        if len(arr) != n:
            raise EmbeddingsFileError(f"{source}: {name} has {len(arr)} rows, expected {n}")
    idx = np.asarray(emb.text_image_index)
    if idx.size and (idx.max() >= n_img or idx.min() < -1):
        raise EmbeddingsFileError(
            f"{source}: /text/image_index out of range [-1, {n_img - 1}] "
            f"(min {idx.min()}, max {idx.max()})"
        )
    for name, ids in (("/image/id", emb.image_id), ("/text/id", emb.text_id)):
        vals, counts = np.unique(np.asarray(ids).astype(str), return_counts=True)
        if (counts > 1).any():
            raise EmbeddingsFileError(f"{source}: duplicate {name} {vals[counts > 1][:5].tolist()}")


def attr_value(v):
    """An HDF5-storable attribute: None -> "none", containers -> JSON, str subclasses -> str."""
    if v is None:
        return "none"
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, str):
        return str(v)
    return v


def write_embeddings(path: str | os.PathLike, emb: Embeddings) -> Path:
    """Validate ``emb`` and write it atomically (temporary name, then rename)."""
    path = Path(path)
    validate_arrays(emb, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            d = emb.dim if (emb.image.size or emb.text.size) else 0
            for mod in MODALITIES:
                arr = np.asarray(getattr(emb, mod), dtype=np.float32).reshape(-1, d) if d else np.zeros((0, 0), np.float32)
                g = f.create_group(mod)
                g.create_dataset(
                    "embedding", data=arr,
                    chunks=(min(max(len(arr), 1), 4096), max(d, 1)) if arr.size else None,
                )
                ids = _as_id_array(emb.image_id if mod == "image" else emb.text_id)
                g.create_dataset("id", data=ids, dtype=_STR if ids.dtype == object else np.int64)
            f["image"].create_dataset("file", data=np.asarray(emb.image_file, dtype=object), dtype=_STR)
            f["text"].create_dataset("image_index", data=np.asarray(emb.text_image_index, dtype=np.int64))
            f["text"].create_dataset("caption", data=np.asarray(emb.caption, dtype=object), dtype=_STR)
            attrs = {"normalized": False, "schema_version": SCHEMA_VERSION, "embed_dim": d}
            attrs.update(emb.attrs)
            attrs["normalized"] = bool(attrs["normalized"])
            for k, v in attrs.items():
                f.attrs[k] = attr_value(v)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _decode(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "OS":
        return np.asarray([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr], dtype=object)
    return arr


def read_attrs(path: str | os.PathLike) -> dict:
    with h5py.File(path, "r") as f:
        return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


def read_embeddings(path: str | os.PathLike, modalities=MODALITIES) -> Embeddings:
    """Read a whole embeddings file (or only the embedding arrays of some modalities)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise EmbeddingsFileError(f"{path}: not a readable HDF5 file ({e})") from e
    with f:
        for key in ("image/embedding", "image/id", "image/file", "text/embedding", "text/id",
                    "text/image_index", "text/caption"):
            if key not in f:
                raise EmbeddingsFileError(f"{path}: missing dataset /{key}")
        arrays = {}
        for mod in MODALITIES:
            if mod in modalities:
                arrays[mod] = f[f"{mod}/embedding"][()].astype(np.float32, copy=False)
            else:
                arrays[mod] = np.zeros((0, f[f"{mod}/embedding"].shape[1]), np.float32)
        emb = Embeddings(
            image=arrays["image"], text=arrays["text"],
            image_id=_decode(f["image/id"][()]), image_file=_decode(f["image/file"][()]),
            text_id=_decode(f["text/id"][()]), text_image_index=f["text/image_index"][()].astype(np.int64),
            caption=_decode(f["text/caption"][()]),
            attrs={k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()},
        )
    return emb


def count_rows(path: str | os.PathLike, modality: str) -> tuple[int, int]:
    """(rows, width) of one modality's embedding without reading it."""
    with h5py.File(path, "r") as f:
        shape = f[f"{modality}/embedding"].shape
    return int(shape[0]), int(shape[1]) if len(shape) > 1 else 0


def iter_embedding_chunks(
    path: str | os.PathLike, modality: str, chunk_rows: int = 65536
) -> Iterator[np.ndarray]:
    """Yield float64 row blocks of one modality, so a stage can stream a file larger than memory."""
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    with h5py.File(path, "r") as f:
        ds = f[f"{modality}/embedding"]
        for start in range(0, ds.shape[0], chunk_rows):
            yield ds[start:start + chunk_rows].astype(np.float64)
