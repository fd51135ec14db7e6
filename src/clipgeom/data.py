"""Turning raw image-caption data into a manifest: which images and captions get embedded.

Sources:
- COCO's official layout: a captions JSON (``images`` + ``annotations``) and an images
  directory or ``val2017.zip``;
- a generic folder: an image directory plus a captions CSV or JSON-lines file with
  columns ``image`` (file name) and ``caption`` (optional ``image_id``, ``caption_id``);
- external sets: images only (a folder) or captions only (CSV/JSONL/plain text).

The manifest (JSON) lists images ``{id, file}`` and captions ``{id, image_id, caption}``
in source order, plus every rejected item with its reason. Bad input raises
:class:`DataError` naming the file and item, unless the dataset's policy is ``skip``,
in which case the item goes to ``rejects`` and is counted in the log.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import urllib.request
import zipfile
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Iterable

from .imagesource import ImageSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """Bad input data; the message names the file and the item."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- readers
def read_coco_captions(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Images ``{id, file}`` and captions ``{id, image_id, caption}`` of a COCO captions JSON."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"captions file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list key '{key}'")
    images = []
    for i, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: images[{i}] lacks 'id' or 'file_name'")
        images.append({"id": im["id"], "file": im["file_name"]})
    captions = []
    for i, an in enumerate(data["annotations"]):
        if not isinstance(an, dict) or not {"id", "image_id", "caption"} <= set(an):
            raise DataError(f"{path}: annotations[{i}] lacks 'id', 'image_id' or 'caption'")
        captions.append({"id": an["id"], "image_id": an["image_id"], "caption": an["caption"]})
    return images, captions


def _read_table(path: Path) -> list[dict]:
    """Rows of a CSV (header row) or JSON-lines file."""
    if not path.exists():
        raise DataError(f"captions file not found: {path}")
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: malformed JSON line ({e})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{n}: expected a JSON object")
            rows.append(row)
        return rows
    if path.suffix.lower() in (".csv", ".tsv"):
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    if path.suffix.lower() == ".txt":
        return [{"caption": line} for line in path.read_text().splitlines() if line.strip()]
    raise DataError(f"{path}: unknown captions format (use .csv, .tsv, .jsonl or .txt)")


def _maybe_int(v):
    if isinstance(v, int):
        return v
    s = str(v).strip()
    return int(s) if s.lstrip("-").isdigit() else s


def read_caption_table(path: str | os.PathLike, need_image: bool = True) -> tuple[list[dict], list[dict]]:
    """Images and captions of a generic captions table.

    Columns: ``image`` (file name; required when ``need_image``), ``caption``; optional
    ``image_id`` (default: the file name's stem) and ``caption_id`` (default: row number).
    """
    path = Path(path)
    rows = _read_table(path)
    images: "OrderedDict[str, dict]" = OrderedDict()
    captions = []
    for n, row in enumerate(rows):
        if "caption" not in row:
            raise DataError(f"{path}: row {n}: no 'caption' column")
        image_id = None
        if need_image:
            if not row.get("image"):
                raise DataError(f"{path}: row {n}: no 'image' column/value")
            file = str(row["image"])
            image_id = _maybe_int(row["image_id"]) if row.get("image_id") not in (None, "") else Path(file).stem
            prev = images.get(file)
            if prev is None:
                images[file] = {"id": image_id, "file": file}
            elif prev["id"] != image_id:
                raise DataError(f"{path}: row {n}: image {file} has two ids ({prev['id']!r}, {image_id!r})")
        cid = _maybe_int(row["caption_id"]) if row.get("caption_id") not in (None, "") else n
        captions.append({"id": cid, "image_id": image_id, "caption": row["caption"]})
    return list(images.values()), captions


def list_image_folder(root: str | os.PathLike) -> list[dict]:
    """Images of a folder (or zip) sorted by name; id = file stem."""
    src = ImageSource(root)
    if not src.exists():
        raise DataError(f"image folder not found: {root}")
    names = sorted(n for n in src.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
    return [{"id": _maybe_int(Path(n).stem), "file": n} for n in names]


# ----------------------------------------------------------------------------- manifest
class _Rejects:
    def __init__(self, policy: str, dataset: str):
        if policy not in ("error", "skip"):
            raise ValueError(f"on_bad_item must be 'error' or 'skip', got {policy!r}")
        self.policy, self.dataset, self.items = policy, dataset, []

    def __call__(self, kind: str, item, reason: str) -> None:
        msg = f"dataset {self.dataset!r}: {kind} {item!r}: {reason}"
        if self.policy == "error":
            raise DataError(msg + " (set on_bad_item: skip to log and skip such items)")
        log.warning("skipped %s", msg)
        self.items.append({"kind": kind, "item": item, "reason": reason})


def build_manifest(
    dataset: str,
    images: list[dict],
    captions: list[dict],
    *,
    image_root: str | os.PathLike | None,
    policy: str = "error",
    captions_per_image: int | None = None,
    require_captions: bool = True,
    require_images: bool = True,
    source: dict | None = None,
) -> dict:
    """Check images and captions against each other and the image files; return the manifest.

    Checks, in order: duplicate image ids, missing image files, duplicate caption ids,
    empty captions, captions whose image is absent, images without captions. Caption
    order (annotation order) is kept; ``captions_per_image`` keeps the first k per image.
    """
    reject = _Rejects(policy, dataset)
    src = ImageSource(image_root) if image_root is not None else None
    if src is not None and not src.exists():
        raise DataError(f"dataset {dataset!r}: image source not found: {image_root}")

    kept_images, seen = [], set()
    for im in images:
        if im["id"] in seen:
            reject("image", im["id"], "duplicate image id")
            continue
        if src is not None and not src.has(im["file"]):
            reject("image", im["id"], f"image file missing: {im['file']} (in {image_root})")
            continue
        seen.add(im["id"])
        kept_images.append(im)
    image_ids = {im["id"] for im in kept_images}
    all_image_ids = {im["id"] for im in images}

    kept_caps, seen_caps, per_image = [], set(), Counter()
    n_trimmed = 0
    for c in captions:
        if c["id"] in seen_caps:
            reject("caption", c["id"], "duplicate caption id")
            continue
        seen_caps.add(c["id"])
        text = c["caption"] if isinstance(c["caption"], str) else ""
        if not text.strip():
            reject("caption", c["id"], "empty caption")
            continue
        if require_images and c["image_id"] not in image_ids:
            why = ("its image was rejected" if c["image_id"] in all_image_ids
                   else f"its image id {c['image_id']!r} is not in the dataset")
            reject("caption", c["id"], why)
            continue
        if captions_per_image is not None and c["image_id"] is not None:
            if per_image[c["image_id"]] >= captions_per_image:
                n_trimmed += 1
                continue
        per_image[c["image_id"]] += 1
        kept_caps.append({"id": c["id"], "image_id": c["image_id"], "caption": text.strip()})

    if require_captions:
        final_images = []
        for im in kept_images:
            if per_image[im["id"]] == 0:
                reject("image", im["id"], f"image has no captions ({im['file']})")
                continue
            final_images.append(im)
        kept_images = final_images

    counts = {
        "images": len(kept_images), "captions": len(kept_caps),
        "images_in_source": len(images), "captions_in_source": len(captions),
        "rejected": len(reject.items), "captions_beyond_k": n_trimmed,
    }
    log.info("dataset %r: %d images, %d captions kept; %d rejected; %d captions beyond k=%s dropped",
             dataset, counts["images"], counts["captions"], counts["rejected"], n_trimmed, captions_per_image)
    return {
        "dataset": dataset,
        "source": source or {},
        "policy": policy,
        "captions_per_image": captions_per_image,
        "images": kept_images,
        "captions": kept_caps,
        "rejects": reject.items,
        "counts": counts,
    }


def manifest_for(dataset: str, cfg: dict, demo_root: str | os.PathLike | None = None) -> dict:
    """Build the manifest of one configured dataset (``cfg`` is its config block)."""
    kind = cfg["kind"]
    policy = cfg.get("on_bad_item", "error")
    k = cfg.get("captions_per_image")
    if kind == "coco":
        images, captions = read_coco_captions(cfg["captions"])
        source = {"captions": cfg["captions"], "captions_sha256": sha256_file(cfg["captions"]),
                  "images": cfg["images"]}
        return build_manifest(dataset, images, captions, image_root=cfg["images"], policy=policy,
                              captions_per_image=k, source=source)
    if kind in ("folder", "demo"):
        captions_path = cfg["captions"] if kind == "folder" else Path(demo_root) / "captions.jsonl"
        image_root = cfg["images"] if kind == "folder" else Path(demo_root) / "images"
        images, captions = read_caption_table(captions_path)
        source = {"captions": str(captions_path), "captions_sha256": sha256_file(captions_path),
                  "images": str(image_root)}
        return build_manifest(dataset, images, captions, image_root=image_root, policy=policy,
                              captions_per_image=k, source=source)
    if kind == "images":
        images = list_image_folder(cfg["images"])
        return build_manifest(dataset, images, [], image_root=cfg["images"], policy=policy,
                              require_captions=False, source={"images": cfg["images"]})
    if kind == "captions":
        _, captions = read_caption_table(cfg["captions"], need_image=False)
        source = {"captions": cfg["captions"], "captions_sha256": sha256_file(cfg["captions"])}
        return build_manifest(dataset, [], captions, image_root=None, policy=policy,
                              require_images=False, require_captions=False, source=source)
    raise DataError(f"dataset {dataset!r}: kind {kind!r} has no manifest (imported embeddings?)")


def image_root_for(cfg: dict, demo_root: str | os.PathLike | None = None) -> str | None:
    """Where a dataset's images are read from (None for caption-only sets)."""
    if cfg["kind"] == "demo":
        return str(Path(demo_root) / "images")
    return cfg.get("images")


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's content (what gets embedded, in order)."""
    payload = json.dumps({k: manifest[k] for k in ("images", "captions", "source")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def shard_slice(n: int, shard: int, n_shards: int) -> slice:
    """Rows of shard ``shard`` (1-based) of ``n_shards`` near-equal contiguous slices of n rows."""
    if not 1 <= shard <= n_shards:
        raise ValueError(f"shard {shard} not in 1..{n_shards}")
    bounds = [round(i * n / n_shards) for i in range(n_shards + 1)]
    return slice(bounds[shard - 1], bounds[shard])


# ----------------------------------------------------------------------------- download
def download(url: str, dest: str | os.PathLike, what: str) -> Path:
    """Fetch ``url`` to ``dest`` (temporary name, renamed when complete)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    log.info("downloading %s from %s to %s", what, url, dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as fh:
            shutil.copyfileobj(r, fh, length=1 << 22)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"could not download {what} from {url} ({e}). Without network, download it elsewhere "
            f"and put it at {dest} (or point the dataset's config at your copy)."
        ) from None
    os.replace(tmp, dest)
    return dest


def download_coco(images_url: str, annotations_url: str, member: str,
                  captions_out: str | os.PathLike, images_out: str | os.PathLike) -> None:
    """Fetch COCO's official archives: the captions JSON (extracted) and the images zip (kept zipped)."""
    captions_out, images_out = Path(captions_out), Path(images_out)
    if not captions_out.exists():
        ann_zip = download(annotations_url, captions_out.parent / Path(annotations_url).name, "COCO annotations")
        with zipfile.ZipFile(ann_zip) as zf:
            try:
                data = zf.read(member)
            except KeyError:
                raise DataError(f"{ann_zip}: has no member {member}") from None
        tmp = captions_out.with_name(captions_out.name + ".part")
        tmp.write_bytes(data)
        os.replace(tmp, captions_out)
    if not images_out.exists():
        if images_out.suffix.lower() != ".zip":
            zpath = download(images_url, images_out.parent / Path(images_url).name, "COCO images")
            with zipfile.ZipFile(zpath) as zf:
                zf.extractall(images_out.parent)
            if not images_out.exists():
                raise DataError(f"{zpath} did not contain {images_out.name}/")
        else:
            download(images_url, images_out, "COCO images")


def iter_missing(paths: Iterable[tuple[str, str]]) -> list[str]:
    return [f"{what}: {p}" for what, p in paths if p and not Path(p).exists()]
