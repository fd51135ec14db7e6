"""The project's embeddings file: one HDF5 file per dataset x model.

Schema (``results/{dataset}/{model}/embeddings.h5``)::

    /image/embedding   float32 (N_img, d)   raw encoder output, NOT normalised
    /image/id          int64 or utf-8 (N_img,)
    /image/file        utf-8 (N_img,)        file name inside the dataset ("" when unknown)
    /text/embedding    float32 (N_txt, d)   raw encoder output, NOT normalised
    /text/id           int64 or utf-8 (N_txt,)
    /text/image_index  int64 (N_txt,)        row of the caption's image in /image (-1: none)
    /text/caption      utf-8 (N_txt,)
    /{image,text}/concept          utf-8 (N,)    optional: the concept each item shows (synthetic worlds)
    /{image,text}/train_frequency  float64 (N,)  optional: that concept's frequency in the model's training set
    attrs: model, pretrained, logit_scale, embed_dim, open_clip_version,
           torch_version, precision, device, normalized (False), dataset,
           input_checksum, schema_version, rejects (JSON list of {kind, item, reason, stage}),
           n_rejected, on_bad_item, ...

Either modality may have zero rows (an external set of generated captions has
no images), but not both.  No file holds NaN/inf or zero-norm rows: the writers refuse them
(or, under ``on_bad_item: skip``, the importer and the merge drop them as rejects) and the
readers check again, so no stage ever sees one.  Every writer goes through :func:`write_embeddings`, which writes
under a temporary name and renames only when the file is complete, so a file
with the final name is never partial.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path

SCHEMA_VERSION = 1
MODALITIES = ("image", "text")
_STR = h5py.string_dtype(encoding="utf-8")


class EmbeddingsFileError(ValueError):
    """An embeddings file (or array) breaks the schema; the message names file and key.

    ``path``: the file concerned (None for arrays in memory); ``corrupt``: True when the file is
    not readable HDF5 at all (truncated, garbage, I/O error), so a caller may delete a workflow
    output and let the workflow rebuild it.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None, corrupt: bool = False):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.corrupt = bool(corrupt)


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
    # Optional, per row: the concept an item shows and that concept's frequency in the training set of
    # the model (synthetic worlds, clipgeom.world). Files written without them simply lack them.
    image_concept: np.ndarray | None = None
    image_train_frequency: np.ndarray | None = None
    text_concept: np.ndarray | None = None
    text_train_frequency: np.ndarray | None = None

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


def check_numeric(name: str, arr: np.ndarray, source: str) -> None:
    """Refuse arrays that are not real numbers (complex, bool, strings, objects, dates, records).

    Integer arrays are accepted (and cast to float32 by the writers)."""
    arr = np.asarray(arr)
    kind = arr.dtype.kind
    if kind in "fiu":
        return
    what = {
        "c": "complex (the imaginary part would be lost)",
        "b": "boolean",
        "O": "object (pickled Python objects)",
        "U": "string",
        "S": "bytes",
        "M": "datetime",
        "m": "timedelta",
        "V": "record/void",
    }.get(kind, kind)
    raise EmbeddingsFileError(
        f"{source}: {name} has dtype {arr.dtype} ({what}); embeddings must be real numbers (float or integer)",
        path=_path_of(source),
    )


def _path_of(source: str):
    return None if source.startswith("<") else source


def check_finite(name: str, arr: np.ndarray, source: str) -> None:
    """Raise naming the first non-finite row, or do nothing."""
    bad = ~np.isfinite(arr)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise EmbeddingsFileError(
            f"{source}: {name} has {int(bad.sum())} NaN/inf value(s); first in row {row}", path=_path_of(source)
        )


def zero_norm_rows(arr: np.ndarray) -> np.ndarray:
    """Indices of all-zero rows (rows whose norm is 0)."""
    arr = np.asarray(arr)
    if arr.ndim != 2 or not arr.shape[0]:
        return np.zeros(0, np.int64)
    if arr.shape[1] == 0:
        return np.arange(arr.shape[0])
    return np.flatnonzero(~np.any(arr != 0, axis=1))


def bad_rows(arr: np.ndarray) -> dict[int, str]:
    """{row: reason} for rows that no embeddings file may hold: non-finite or zero-norm."""
    out = {}
    arr = np.asarray(arr)
    if arr.ndim != 2 or not arr.shape[0]:
        return out
    for r in np.flatnonzero(~np.isfinite(arr).all(axis=1)):
        out[int(r)] = "non-finite (NaN/inf) embedding"
    for r in zero_norm_rows(arr):
        out.setdefault(int(r), "zero-norm embedding (all zeros)")
    return out


def check_zero_norm(mod: str, arr: np.ndarray, ids, source: str, row_offset: int = 0) -> None:
    """Raise naming the modality and the ids of zero-norm rows (first 10, and the count)."""
    rows = zero_norm_rows(arr)
    if rows.size:
        ids = np.asarray(ids, dtype=object) if ids is not None else None
        if ids is None or len(ids) != len(arr):
            ids = list(rows[:10] + row_offset)
        else:
            ids = list(ids[rows[:10]])
        ids = [x.decode() if isinstance(x, bytes) else (x.item() if isinstance(x, np.generic) else x) for x in ids]
        raise EmbeddingsFileError(
            f"{source}: /{mod}/embedding has {rows.size} zero-norm row(s) (ids {ids}"
            f"{' ...' if rows.size > 10 else ''}); embeddings files never hold zero-norm rows "
            "(with on_bad_item: skip they are dropped and listed as rejects)",
            path=_path_of(source),
        )


def check_index(idx, n_img: int, source: str, name: str = "/text/image_index") -> np.ndarray:
    """An int64 pairing index, refusing non-integer values (integer-valued floats are accepted)."""
    idx = np.asarray(idx)
    if idx.dtype.kind not in "iuf" or idx.ndim != 1:
        raise EmbeddingsFileError(
            f"{source}: {name} must be a 1-D integer array, got dtype {idx.dtype} shape {idx.shape}",
            path=_path_of(source),
        )
    if idx.dtype.kind == "f":
        bad = ~np.isfinite(idx) | (idx != np.round(idx))
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise EmbeddingsFileError(
                f"{source}: {name} holds non-integer values ({int(bad.sum())} of them); first in row {r}: {idx[r]!r}",
                path=_path_of(source),
            )
    idx = idx.astype(np.int64)
    if idx.size and (idx.max() >= n_img or idx.min() < -1):
        r = int(np.flatnonzero((idx >= n_img) | (idx < -1))[0])
        raise EmbeddingsFileError(
            f"{source}: {name} out of range [-1, {n_img - 1}] "
            f"(min {idx.min()}, max {idx.max()}; first bad in row {r}: {idx[r]})",
            path=_path_of(source),
        )
    return idx


def _check_embedding(mod: str, arr, source: str) -> None:
    check_numeric(f"/{mod}/embedding", arr, source)
    if arr.ndim != 2:
        raise EmbeddingsFileError(
            f"{source}: /{mod}/embedding must be 2-D, got shape {arr.shape}", path=_path_of(source)
        )
    check_finite(f"/{mod}/embedding", arr, source)


def _check_meta(emb: Embeddings, n_img: int, n_txt: int, source: str) -> None:
    for name, arr, n in (
        ("/image/id", emb.image_id, n_img),
        ("/image/file", emb.image_file, n_img),
        ("/text/id", emb.text_id, n_txt),
        ("/text/image_index", emb.text_image_index, n_txt),
        ("/text/caption", emb.caption, n_txt),
    ):
        if len(arr) != n:
            raise EmbeddingsFileError(f"{source}: {name} has {len(arr)} rows, expected {n}", path=_path_of(source))
    check_index(emb.text_image_index, n_img, source)
    for name, ids in (("/image/id", emb.image_id), ("/text/id", emb.text_id)):
        vals, counts = np.unique(np.asarray(ids).astype(str), return_counts=True)
        if (counts > 1).any():
            raise EmbeddingsFileError(
                f"{source}: duplicate {name} {vals[counts > 1][:5].tolist()}", path=_path_of(source)
            )


def validate_arrays(emb: Embeddings, source: str = "<memory>") -> None:
    """Check dtypes, shapes, widths, pairing indices, finiteness and norms; raise naming what is wrong.

    Refused: non-real dtypes (complex, bool, strings, objects; integers are fine), NaN/inf values,
    zero-norm rows (named by modality and id), non-integer or out-of-range /text/image_index,
    duplicate ids, row counts that disagree, and a file with no image rows and no text rows.
    """
    for mod in MODALITIES:
        _check_embedding(mod, getattr(emb, mod), source)
    if emb.image.shape[0] and emb.text.shape[0] and emb.image.shape[1] != emb.text.shape[1]:
        raise EmbeddingsFileError(
            f"{source}: image embeddings have width {emb.image.shape[1]} but text embeddings "
            f"have width {emb.text.shape[1]}",
            path=_path_of(source),
        )
    n_img, n_txt = emb.image.shape[0], emb.text.shape[0]
    if n_img == 0 and n_txt == 0:
        raise EmbeddingsFileError(
            f"{source}: no image rows and no text rows: an embeddings file must hold at least one embedding",
            path=_path_of(source),
        )
    _check_meta(emb, n_img, n_txt, source)
    _check_concepts(emb, n_img, n_txt, source)
    check_zero_norm("image", emb.image, emb.image_id, source)
    check_zero_norm("text", emb.text, emb.text_id, source)


CONCEPT_FIELDS = ("concept", "train_frequency")


def _check_concepts(emb: Embeddings, n_img: int, n_txt: int, source: str) -> None:
    """The optional per-row concept and training frequency: one per row, frequencies finite and >= 0."""
    for mod, n in (("image", n_img), ("text", n_txt)):
        concept, freq = getattr(emb, f"{mod}_concept"), getattr(emb, f"{mod}_train_frequency")
        if (concept is None) != (freq is None):
            raise EmbeddingsFileError(
                f"{source}: /{mod}/concept and /{mod}/train_frequency come together (one of them is missing)",
                path=_path_of(source),
            )
        if concept is None:
            continue
        for name, arr in (("concept", concept), ("train_frequency", freq)):
            if len(arr) != n:
                raise EmbeddingsFileError(
                    f"{source}: /{mod}/{name} has {len(arr)} rows but /{mod}/embedding has {n}",
                    path=_path_of(source),
                )
        f = np.asarray(freq)
        check_numeric(f"/{mod}/train_frequency", f, source)
        bad = np.flatnonzero(~np.isfinite(f.astype(np.float64)) | (f < 0))
        if bad.size:
            raise EmbeddingsFileError(
                f"{source}: /{mod}/train_frequency row {int(bad[0])} is {f[bad[0]]!r}; frequencies are finite and >= 0",
                path=_path_of(source),
            )


def has_concepts(emb: Embeddings) -> bool:
    """True when both modalities carry a concept and a training frequency per row."""
    return emb.image_concept is not None and emb.text_concept is not None


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
    """Validate ``emb`` (see :func:`validate_arrays`) and write it atomically (temporary name, then rename)."""
    path = Path(path)
    validate_arrays(emb, str(path))
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            d = emb.dim if (emb.image.size or emb.text.size) else 0
            for mod in MODALITIES:
                arr = (
                    np.asarray(getattr(emb, mod), dtype=np.float32).reshape(-1, d)
                    if d
                    else np.zeros((0, 0), np.float32)
                )
                g = f.create_group(mod)
                g.create_dataset(
                    "embedding",
                    data=arr,
                    chunks=(min(max(len(arr), 1), 4096), max(d, 1)) if arr.size else None,
                )
                ids = _as_id_array(emb.image_id if mod == "image" else emb.text_id)
                g.create_dataset("id", data=ids, dtype=_STR if ids.dtype == object else np.int64)
            f["image"].create_dataset("file", data=np.asarray(emb.image_file, dtype=object), dtype=_STR)
            f["text"].create_dataset("image_index", data=np.asarray(emb.text_image_index, dtype=np.int64))
            f["text"].create_dataset("caption", data=np.asarray(emb.caption, dtype=object), dtype=_STR)
            for mod in MODALITIES:
                if getattr(emb, f"{mod}_concept") is not None:
                    concept = np.asarray([str(c) for c in getattr(emb, f"{mod}_concept")], dtype=object)
                    f[mod].create_dataset("concept", data=concept, dtype=_STR)
                    f[mod].create_dataset(
                        "train_frequency", data=np.asarray(getattr(emb, f"{mod}_train_frequency"), np.float64)
                    )
            attrs = {"normalized": False, "schema_version": SCHEMA_VERSION, "embed_dim": d}
            attrs.update(emb.attrs)
            attrs["normalized"] = bool(attrs["normalized"])
            for k, v in attrs.items():
                f.attrs[k] = attr_value(v)
    return path


def _decode(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind in "OS":
        return np.asarray([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr], dtype=object)
    return arr


def _corrupt(path, e: Exception) -> EmbeddingsFileError:
    return EmbeddingsFileError(
        f"{path}: not a readable HDF5 embeddings file (truncated or corrupt?): {type(e).__name__}: {e}",
        path=path,
        corrupt=True,
    )


@contextmanager
def _open(path: str | os.PathLike):
    """h5py.File(path, "r"), turning h5py's OSError (at open or while reading) into EmbeddingsFileError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise _corrupt(path, e) from e
    try:
        with f:
            yield f
    except (OSError, RuntimeError) as e:  # h5py raises these for unreadable chunks / bad heaps
        raise _corrupt(path, e) from e


def _dataset(f, path, key: str):
    if key not in f:
        raise EmbeddingsFileError(f"{path}: missing dataset /{key}", path=path)
    obj = f[key]
    if not isinstance(obj, h5py.Dataset):
        raise EmbeddingsFileError(f"{path}: /{key} is not a dataset", path=path)
    return obj


def _attrs(f) -> dict:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}


def read_attrs(path: str | os.PathLike) -> dict:
    """The file's attributes (raises EmbeddingsFileError, ``corrupt=True``, for an unreadable file)."""
    with _open(path) as f:
        return _attrs(f)


_KEYS = ("image/embedding", "image/id", "image/file", "text/embedding", "text/id", "text/image_index", "text/caption")


def read_embeddings(path: str | os.PathLike, modalities=MODALITIES, *, validate: bool = True) -> Embeddings:
    """Read a whole embeddings file (or only the embedding arrays of some modalities).

    The file is checked on read (:func:`validate_arrays`'s rules, for the modalities read), so no
    stage ever sees NaN/inf or zero-norm rows, bad pairing indices or duplicate ids in a file
    written by someone else.  ``validate=False`` skips the row checks (only for the importer,
    which applies the dataset's on_bad_item policy itself).  Unreadable files raise
    :class:`EmbeddingsFileError` with ``corrupt=True``.
    """
    path = Path(path)
    with _open(path) as f:
        ds = {key: _dataset(f, path, key) for key in _KEYS}
        shapes = {}
        for mod in MODALITIES:
            e = ds[f"{mod}/embedding"]
            check_numeric(f"/{mod}/embedding", np.empty(0, e.dtype), str(path))
            if e.ndim != 2:
                raise EmbeddingsFileError(f"{path}: /{mod}/embedding must be 2-D, got shape {e.shape}", path=path)
            shapes[mod] = e.shape
        arrays = {}
        for mod in MODALITIES:
            if mod in modalities:
                arrays[mod] = ds[f"{mod}/embedding"][()].astype(np.float32, copy=False)
            else:
                arrays[mod] = np.zeros((0, shapes[mod][1]), np.float32)
        emb = Embeddings(
            image=arrays["image"],
            text=arrays["text"],
            image_id=_decode(ds["image/id"][()]),
            image_file=_decode(ds["image/file"][()]),
            text_id=_decode(ds["text/id"][()]),
            text_image_index=ds["text/image_index"][()],
            caption=_decode(ds["text/caption"][()]),
            attrs=_attrs(f),
        )
        for mod in MODALITIES:
            if f"{mod}/concept" in f and f"{mod}/train_frequency" in f:
                setattr(emb, f"{mod}_concept", _decode(_dataset(f, path, f"{mod}/concept")[()]))
                setattr(emb, f"{mod}_train_frequency", _dataset(f, path, f"{mod}/train_frequency")[()])
    if not validate:
        emb.text_image_index = np.asarray(emb.text_image_index).astype(np.int64)
        return emb
    n_img, n_txt = shapes["image"][0], shapes["text"][0]
    if n_img and n_txt and shapes["image"][1] != shapes["text"][1]:
        raise EmbeddingsFileError(
            f"{path}: image embeddings have width {shapes['image'][1]} but text "
            f"embeddings have width {shapes['text'][1]}",
            path=path,
        )
    _check_meta(emb, n_img, n_txt, str(path))
    _check_concepts(emb, n_img, n_txt, str(path))
    emb.text_image_index = np.asarray(emb.text_image_index).astype(np.int64)
    for mod in MODALITIES:
        if mod in modalities:
            check_finite(f"/{mod}/embedding", arrays[mod], str(path))
            check_zero_norm(mod, arrays[mod], emb.image_id if mod == "image" else emb.text_id, str(path))
    return emb


def count_rows(path: str | os.PathLike, modality: str) -> tuple[int, int]:
    """(rows, width) of one modality's embedding without reading it."""
    path = Path(path)
    with _open(path) as f:
        shape = _dataset(f, path, f"{modality}/embedding").shape
    return int(shape[0]), int(shape[1]) if len(shape) > 1 else 0


def iter_embedding_chunks(path: str | os.PathLike, modality: str, chunk_rows: int = 65536) -> Iterator[np.ndarray]:
    """Yield float64 row blocks of one modality, so a stage can stream a file larger than memory.

    Each block is checked as it is read: a NaN/inf or zero-norm row raises
    :class:`EmbeddingsFileError` naming the file, the modality and the row.
    """
    if modality not in MODALITIES:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    path = Path(path)
    with _open(path) as f:
        ds = _dataset(f, path, f"{modality}/embedding")
        check_numeric(f"/{modality}/embedding", np.empty(0, ds.dtype), str(path))
        for start in range(0, ds.shape[0], chunk_rows):
            x = ds[start : start + chunk_rows].astype(np.float64)
            bad = ~np.isfinite(x)
            if bad.any():
                r = int(np.argwhere(bad)[0][0]) + start
                raise EmbeddingsFileError(
                    f"{path}: /{modality}/embedding has NaN/inf value(s); first in row {r}", path=path
                )
            zero = zero_norm_rows(x)
            if zero.size:
                ids = zero[:10] + start
                if f"{modality}/id" in f and len(f[f"{modality}/id"]) == ds.shape[0]:
                    ids = _decode(f[f"{modality}/id"][start : start + chunk_rows][zero[:10]])
                ids = [x.item() if isinstance(x, np.generic) else x for x in ids]
                raise EmbeddingsFileError(
                    f"{path}: /{modality}/embedding has zero-norm row(s) (ids {ids}, first in row "
                    f"{int(zero[0]) + start}); embeddings files never hold zero-norm rows",
                    path=path,
                )
            yield x


def check_rows_vary(path: str | os.PathLike, stage: str, modalities=MODALITIES, chunk_rows: int = 65536) -> None:
    """Raise :class:`EmbeddingsFileError` when every row of a modality (two or more rows) is the
    same vector: no spread, so separability, covariance, shifts to the mean and SLERP are undefined.

    One streaming pass (a running per-feature min and max); the analysis stages call it first so
    that such an input ends in one message naming the file, not in a plotting traceback.
    """
    path = Path(path)
    for mod in modalities:
        lo = hi = None
        n = 0
        for x in iter_embedding_chunks(path, mod, chunk_rows):
            n += len(x)
            lo = x.min(0) if lo is None else np.minimum(lo, x.min(0))
            hi = x.max(0) if hi is None else np.maximum(hi, x.max(0))
        if n >= 2 and np.all(hi == lo):
            raise EmbeddingsFileError(
                f"{path}: every one of the {n} {mod} rows is the same vector, so {stage} has nothing to "
                f"measure; check the input (the same {'image' if mod == 'image' else 'caption'} throughout? "
                "a model that ignores its input?)",
                path=path,
            )
