"""Importing precomputed embeddings (the ``embeddings`` dataset kind).

Accepted files:
- ``.npz`` with arrays ``image`` (N_img x d), ``text`` (N_txt x d) and optional
  ``text_image_index`` (N_txt,; default: caption j belongs to image j, which needs N_img == N_txt);
- ``.npy`` of shape (2, N, d): ``[0]`` images, ``[1]`` captions, row i of each a pair;
- ``.h5`` in this project's own schema (see :mod:`clipgeom.h5io`).

Checks (each error names the file and the array, and the first bad row where there is one):
- embeddings must be real numbers: float arrays are cast to float32, integer arrays are accepted
  and cast too; complex, boolean, string, object (pickled) arrays are refused.  Values that are
  finite in the file but overflow float32 count as non-finite;
- ``text_image_index`` must hold integers in [-1, N_img): integer-valued floats (``1.0``) are
  accepted, any other float (``0.999``) is refused;
- rows that are NaN/inf or zero-norm: with ``policy="error"`` (``on_bad_item: error``, the
  default) the import fails naming the rows; with ``policy="skip"`` they are dropped, an image
  row taking its captions with it (``text_image_index`` is re-indexed), and every dropped row is
  listed in ``attrs["rejects"]`` (JSON) / ``attrs["n_rejected"]`` with stage ``import_embeddings``.
  If every image (or every caption) of the file is dropped, the import fails.

Metadata (the dataset's optional ``metadata:``, :func:`load_metadata`): a JSON list with one record per
caption row of the file (per pair row for a ``.npy`` or a 1:1 ``.npz``), each with ``caption`` and
optionally ``image_id``, ``file_name`` (of the row's image), ``concept`` and ``train_frequency`` (both or
neither). It fills ``/text/caption``, ``/image/id``, ``/image/file`` and the optional concept fields before
the bad-row policy runs; a record count that differs from the rows is an error naming the file.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from .h5io import (
    Embeddings,
    EmbeddingsFileError,
    bad_rows,
    check_finite,
    check_index,
    check_numeric,
    read_embeddings,
    validate_arrays,
)
from .hashing import sha256_file

log = logging.getLogger(__name__)

STAGE = "import_embeddings"


def _float32(name: str, arr: np.ndarray, source: str) -> np.ndarray:
    check_numeric(name, arr, source)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(arr).astype(np.float32)


def _pairs(image: np.ndarray, text: np.ndarray, tii: np.ndarray | None, source: str) -> Embeddings:
    image = _float32("image", image, source)
    text = _float32("text", text, source)
    if image.ndim != 2 or text.ndim != 2:
        raise EmbeddingsFileError(
            f"{source}: 'image' and 'text' must be 2-D, got {image.shape} and {text.shape}", path=source
        )
    if image.shape[1] != text.shape[1]:
        raise EmbeddingsFileError(
            f"{source}: image embeddings have width {image.shape[1]} but text embeddings have width {text.shape[1]}",
            path=source,
        )
    if tii is None:
        if len(image) != len(text):
            raise EmbeddingsFileError(
                f"{source}: {len(image)} images but {len(text)} captions and no 'text_image_index' to pair them",
                path=source,
            )
        tii = np.arange(len(text))
    tii = np.asarray(tii)
    if tii.shape != (len(text),):
        raise EmbeddingsFileError(
            f"{source}: 'text_image_index' has shape {tii.shape}, expected ({len(text)},)", path=source
        )
    tii = check_index(tii, len(image), source, name="'text_image_index'")
    n = len(image)
    return Embeddings(
        image=image,
        text=text,
        image_id=np.arange(n),
        image_file=np.asarray([""] * n, dtype=object),
        text_id=np.arange(len(text)),
        text_image_index=tii,
        caption=np.asarray([""] * len(text), dtype=object),
        attrs={},
    )


def _npz_array(z, key: str, path: Path) -> np.ndarray:
    try:
        return z[key]
    except ValueError as e:  # object arrays need pickle: refused
        raise EmbeddingsFileError(
            f"{path}: array '{key}' has dtype object (saved with pickling); "
            "embeddings must be real numbers (float or integer)",
            path=path,
        ) from e
    except (OSError, zipfile.BadZipFile, EOFError) as e:
        raise EmbeddingsFileError(
            f"{path}: array '{key}' cannot be read ({type(e).__name__}: {e})", path=path, corrupt=True
        ) from e


def _load(path: Path) -> Embeddings:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as e:
            raise EmbeddingsFileError(
                f"{path}: not a readable .npz file ({type(e).__name__}: {e})", path=path, corrupt=True
            ) from e
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise EmbeddingsFileError(f"{path}: not an .npz archive (holds a single array)", path=path)
        with z:
            for key in ("image", "text"):
                if key not in z:
                    raise EmbeddingsFileError(f"{path}: missing array '{key}' (has {sorted(z.files)})", path=path)
            return _pairs(
                _npz_array(z, "image", path),
                _npz_array(z, "text", path),
                _npz_array(z, "text_image_index", path) if "text_image_index" in z else None,
                str(path),
            )
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            if "allow_pickle" in str(e):
                raise EmbeddingsFileError(
                    f"{path}: the array has dtype object (saved with pickling); embeddings "
                    "must be real numbers (float or integer)",
                    path=path,
                ) from e
            raise EmbeddingsFileError(f"{path}: not a readable .npy file ({e})", path=path, corrupt=True) from e
        except (OSError, EOFError) as e:
            raise EmbeddingsFileError(
                f"{path}: not a readable .npy file ({type(e).__name__}: {e})", path=path, corrupt=True
            ) from e
        if arr.ndim != 3 or arr.shape[0] != 2:
            raise EmbeddingsFileError(f"{path}: expected shape (2, N, d), got {arr.shape}", path=path)
        check_numeric("the array", arr, str(path))
        return _pairs(arr[0], arr[1], None, str(path))
    if suffix in (".h5", ".hdf5"):
        emb = read_embeddings(path, validate=False)
        emb.image = _float32("/image/embedding", emb.image, str(path))
        emb.text = _float32("/text/embedding", emb.text, str(path))
        return emb
    raise EmbeddingsFileError(f"{path}: unknown embeddings format (use .npz, .npy or .h5)", path=path)


def _jsonable_id(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, bytes):
        return x.decode()
    return x


def apply_bad_row_policy(emb: Embeddings, policy: str, source: str, stage: str) -> tuple[Embeddings, list[dict]]:
    """Drop (``skip``) or refuse (``error``) NaN/inf and zero-norm rows; returns (kept, rejects).

    An image row dropped takes its captions with it; ``text_image_index`` is re-indexed. Every
    dropped row is one reject ``{"kind", "item", "reason", "stage"}``.  Raises
    :class:`EmbeddingsFileError` when, under ``skip``, every image or every caption is dropped.
    """
    if policy not in ("error", "skip"):
        raise ValueError(f"policy (on_bad_item) must be 'error' or 'skip', got {policy!r}")
    bad_img, bad_txt = bad_rows(emb.image), bad_rows(emb.text)
    if not bad_img and not bad_txt:
        return emb, []
    if policy == "error":
        for mod, bad, ids in (("image", bad_img, emb.image_id), ("text", bad_txt, emb.text_id)):
            if bad:
                rows = sorted(bad)
                check_finite(f"/{mod}/embedding" if stage != STAGE else mod, getattr(emb, mod), source)
                raise EmbeddingsFileError(
                    f"{source}: {mod} embeddings have {len(rows)} {bad[rows[0]].replace(' embedding', '')} row(s) "
                    f"(ids {[_jsonable_id(ids[r]) for r in rows[:10]]}{' ...' if len(rows) > 10 else ''}); "
                    "embeddings files never hold zero-norm or non-finite rows "
                    "(set on_bad_item: skip to drop and list them)",
                    path=None if source.startswith("<") else source,
                )
    rejects = []
    keep_img = np.asarray([i for i in range(len(emb.image)) if i not in bad_img], dtype=np.int64)
    for r in sorted(bad_img):
        rejects.append({"kind": "image", "item": _jsonable_id(emb.image_id[r]), "reason": bad_img[r], "stage": stage})
    new_index = np.full(len(emb.image), -1, dtype=np.int64)
    new_index[keep_img] = np.arange(len(keep_img))
    keep_txt = []
    idx = np.asarray(emb.text_image_index, dtype=np.int64)
    for j in range(len(emb.text)):
        if j in bad_txt:
            rejects.append(
                {"kind": "caption", "item": _jsonable_id(emb.text_id[j]), "reason": bad_txt[j], "stage": stage}
            )
        elif idx[j] >= 0 and idx[j] in bad_img:
            rejects.append(
                {
                    "kind": "caption",
                    "item": _jsonable_id(emb.text_id[j]),
                    "reason": f"its image {_jsonable_id(emb.image_id[idx[j]])!r} was rejected ({bad_img[int(idx[j])]})",
                    "stage": stage,
                }
            )
        else:
            keep_txt.append(j)
    keep_txt = np.asarray(keep_txt, dtype=np.int64)
    for r in rejects:
        log.warning("%s: dropped %s %r: %s", source, r["kind"], r["item"], r["reason"])
    d = emb.image.shape[1] if emb.image.ndim == 2 else emb.text.shape[1]
    kept = Embeddings(
        image=emb.image[keep_img].reshape(-1, d),
        text=emb.text[keep_txt].reshape(-1, d),
        image_id=np.asarray(emb.image_id)[keep_img],
        image_file=np.asarray(emb.image_file, dtype=object)[keep_img],
        text_id=np.asarray(emb.text_id)[keep_txt],
        text_image_index=np.where(idx[keep_txt] >= 0, new_index[np.maximum(idx[keep_txt], 0)], -1)
        if len(keep_txt)
        else np.zeros(0, np.int64),
        caption=np.asarray(emb.caption, dtype=object)[keep_txt],
        attrs=dict(emb.attrs),
    )
    for mod, keep in (("image", keep_img), ("text", keep_txt)):  # optional per-row concept fields go along
        for name in ("concept", "train_frequency"):
            arr = getattr(emb, f"{mod}_{name}")
            if arr is not None:
                setattr(kept, f"{mod}_{name}", np.asarray(arr)[keep])
    for mod, n_in, n_out in (("image", len(emb.image), len(kept.image)), ("caption", len(emb.text), len(kept.text))):
        if n_in and not n_out:
            raise EmbeddingsFileError(
                f"{source}: every {mod} was rejected ({n_in} of {n_in}; {len(rejects)} rejects, first: "
                f"{rejects[0]['kind']} {rejects[0]['item']!r}: {rejects[0]['reason']}); nothing left to write",
                path=None if source.startswith("<") else source,
            )
    return kept, rejects


def _prior_rejects(attrs: dict) -> list[dict]:
    raw = attrs.get("rejects")
    if not raw or raw == "none":
        return []
    try:
        items = json.loads(raw) if isinstance(raw, (str, bytes)) else list(raw)
    except (ValueError, TypeError):
        return []
    return [dict(r, stage=r.get("stage", STAGE)) for r in items if isinstance(r, dict)]


METADATA_FIELDS = ("caption", "image_id", "file_name", "concept", "train_frequency")


def load_metadata(path: str | os.PathLike) -> list[dict]:
    """The records of a metadata JSON: a list of objects, each with a ``caption`` string and optionally
    ``image_id``, ``file_name``, ``concept``, ``train_frequency`` (other keys, e.g. ``index``, are ignored).
    Raises :class:`EmbeddingsFileError` naming the file (and the record) for anything else."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"metadata file not found: {path}")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EmbeddingsFileError(f"{path}: metadata is not readable JSON ({type(e).__name__}: {e})", path=path) from e
    if not isinstance(records, list):
        raise EmbeddingsFileError(
            f"{path}: metadata must be a JSON list with one record per row, got {type(records).__name__}", path=path
        )
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("caption"), str):
            raise EmbeddingsFileError(
                f"{path}: metadata record {i} has no 'caption' string: {str(r)[:120]!r}", path=path
            )
    for field in METADATA_FIELDS[1:]:
        have = [field in r for r in records]
        if any(have) and not all(have):
            raise EmbeddingsFileError(
                f"{path}: metadata record {have.index(False)} lacks {field!r}, which other records have "
                "(a field is given for every record or for none)",
                path=path,
            )
    if records and (("concept" in records[0]) != ("train_frequency" in records[0])):
        raise EmbeddingsFileError(f"{path}: metadata 'concept' and 'train_frequency' come together", path=path)
    return records


def apply_metadata(emb: Embeddings, records: list[dict], source: str | os.PathLike) -> Embeddings:
    """Fill ``emb``'s captions, image ids, file names and concept fields from ``records`` (one per text row).

    A record's ``image_id``/``file_name``/``concept``/``train_frequency`` describe the image of its caption
    row (``text_image_index``); two records of one image that disagree, a count that differs from the
    rows, or one image id for two images raise :class:`EmbeddingsFileError` naming ``source`` (the metadata
    file). Images no record points at keep their ids and file names (and then get no concept: an error when
    the records carry concepts)."""
    n_txt, n_img = len(emb.text), len(emb.image)
    if len(records) != n_txt:
        raise EmbeddingsFileError(
            f"{source}: metadata has {len(records)} records but the embeddings have {n_txt} caption rows "
            f"({n_img} image rows); give one record per row",
            path=source,
        )
    emb.caption = np.asarray([r["caption"] for r in records], dtype=object)
    idx = np.asarray(emb.text_image_index, dtype=np.int64)
    if not records:
        return emb
    image_fields = [f for f in ("image_id", "file_name", "concept", "train_frequency") if f in records[0]]
    per_image: dict[str, list] = {f: [None] * n_img for f in image_fields}
    for j, r in enumerate(records):
        i = int(idx[j])
        if i < 0:
            continue
        for f in image_fields:
            if per_image[f][i] is None:
                per_image[f][i] = r[f]
            elif per_image[f][i] != r[f]:
                raise EmbeddingsFileError(
                    f"{source}: metadata record {j} gives {f}={r[f]!r} for image row {i}, "
                    f"an earlier record of the same image {per_image[f][i]!r}",
                    path=source,
                )
    if "image_id" in per_image:
        ids = [emb.image_id[i] if v is None else v for i, v in enumerate(per_image["image_id"])]
        vals, counts = np.unique(np.asarray([str(x) for x in ids]), return_counts=True)
        if (counts > 1).any():
            raise EmbeddingsFileError(
                f"{source}: metadata gives the same image_id to different image rows: {vals[counts > 1][:5].tolist()}",
                path=source,
            )
        emb.image_id = np.asarray(ids, dtype=object if any(isinstance(x, str) for x in ids) else np.int64)
    if "file_name" in per_image:
        emb.image_file = np.asarray(
            [emb.image_file[i] if v is None else str(v) for i, v in enumerate(per_image["file_name"])], dtype=object
        )
    if "concept" in per_image:
        missing = [i for i, v in enumerate(per_image["concept"]) if v is None]
        if missing:
            raise EmbeddingsFileError(
                f"{source}: metadata gives concepts, but image row {missing[0]} has no record (no caption row)",
                path=source,
            )
        try:
            text_freq = np.asarray([float(r["train_frequency"]) for r in records])
            image_freq = np.asarray([float(v) for v in per_image["train_frequency"]])
        except (TypeError, ValueError) as e:
            raise EmbeddingsFileError(f"{source}: metadata train_frequency must be a number ({e})", path=source) from e
        emb.text_concept = np.asarray([str(r["concept"]) for r in records], dtype=object)
        emb.text_train_frequency = text_freq
        emb.image_concept = np.asarray([str(v) for v in per_image["concept"]], dtype=object)
        emb.image_train_frequency = image_freq
    return emb


def import_embeddings(
    path: str | os.PathLike,
    *,
    dataset: str,
    model: str,
    logit_scale: float,
    policy: str = "error",
    metadata: str | os.PathLike | None = None,
) -> Embeddings:
    """Read a precomputed embeddings file into an :class:`Embeddings` with provenance attrs.

    ``policy`` is the dataset's ``on_bad_item`` (``"error"`` or ``"skip"``) for NaN/inf and
    zero-norm rows.  ``attrs["rejects"]`` (JSON list) and ``attrs["n_rejected"]`` hold every
    rejected item: those already listed in an imported ``.h5`` plus the rows dropped here.
    ``metadata``: a JSON file of per-row records (:func:`load_metadata`, :func:`apply_metadata`) applied
    before the bad-row policy. The result passes :func:`clipgeom.h5io.validate_arrays` (checked here,
    naming the input file).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"embeddings file to import not found: {path}")
    emb = _load(path)
    if metadata is not None:
        emb = apply_metadata(emb, load_metadata(metadata), str(metadata))
    prior = _prior_rejects(emb.attrs)
    emb, rejects = apply_bad_row_policy(emb, policy, str(path), STAGE)
    validate_arrays(emb, str(path))
    norms = np.concatenate([np.linalg.norm(emb.image, axis=1), np.linalg.norm(emb.text, axis=1)])
    unit = bool(norms.size and np.allclose(norms, 1.0, atol=1e-3))
    if unit:
        log.warning(
            "%s: every row has unit norm: these are NORMALISED embeddings; raw norms are lost, "
            "so norm-based results (thin shell, distance from origin) describe the sphere, not CLIP",
            path,
        )
    attrs = dict(emb.attrs)
    all_rejects = prior + rejects
    attrs.update(
        {
            "model": model,
            "pretrained": attrs.get("pretrained", "imported"),
            "dataset": dataset,
            "logit_scale": float(logit_scale),
            "normalized": unit,
            "source_file": str(path),
            "input_checksum": sha256_file(path),
            "imported": True,
            "embed_dim": int(emb.image.shape[1] if emb.image.size else emb.text.shape[1]),
            "rejects": json.dumps(all_rejects),
            "n_rejected": len(all_rejects),
            "on_bad_item": policy,
        }
    )
    if metadata is not None:
        attrs["metadata_file"] = str(metadata)
        attrs["metadata_sha256"] = sha256_file(metadata)
    emb.attrs = attrs
    return emb
