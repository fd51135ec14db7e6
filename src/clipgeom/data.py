"""Turning raw image-caption data into a manifest: which images and captions get embedded.

Sources:
- COCO's official layout: a captions JSON (``images`` + ``annotations``) and an images
  directory or ``val2017.zip``;
- a generic folder: an image directory plus a captions CSV/TSV or JSON-lines file with
  columns ``image`` (file name relative to the image folder) and ``caption`` (optional
  ``image_id``, ``caption_id``);
- external sets: images only (a folder) or captions only (CSV/TSV/JSONL/plain text).

The manifest (JSON) lists images ``{id, file, sha256}`` and captions ``{id, image_id, caption}``
in source order, plus every rejected item with its reason. Bad input raises
:class:`DataError` naming the file, the row (``path:line``, 1-based as in an editor) or the
item, and the dataset, unless the dataset's policy is ``skip``: then the item goes to
``rejects`` as ``{kind, item, reason}`` (plus ``file`` and ``row`` where the item came from
a captions/annotations file) and is counted in the log. A rejected image takes its captions
with it (each listed).

Ids:
- COCO keeps the ids of its JSON (ints, or strings if written so).
- Tables (folder, demo, captions kinds) and image folders: ids are strings, exactly as
  written (surrounding whitespace removed; a JSON number ``6`` is the string ``"6"``). The
  default image id is the image's file name relative to the image root (``a.jpg`` and
  ``a.png`` differ); the default caption id is the 0-based data-row number, as a string,
  counting bad rows too, used only when no row has a ``caption_id`` (some rows with and some
  without is an error).
- In a table a caption belongs to the image FILE of its row; two files with one
  ``image_id`` are a duplicate id (the second file and its captions are rejected).

Text files are UTF-8 (a leading BOM is accepted); a row with bytes that are not UTF-8 is a
bad row. In CSV/TSV every row must have as many fields as the header (an unquoted comma in
a caption is an error, not a truncated caption).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import urllib.request
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .hashing import sha256_file, sha256_hex
from .imagesource import BadImageError, ImageSource, UnsafePathError, safe_relpath

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_BOM = b"\xef\xbb\xbf"
_SURROGATE = re.compile("[\udc80-\udcff]")
# how many reasons a "nothing left to embed" error quotes
_FIRST_REASONS = 5


class DataError(ValueError):
    """Bad input data; the message names the file and the item."""


def _type_name(v) -> str:
    """JSON-ish name of a value's type, for messages ("int", "list", "null")."""
    return "null" if v is None else type(v).__name__


def _where(src: dict | None) -> str:
    """``path:line`` (tables) or ``path: annotations[3]`` (COCO JSON) of an item's origin."""
    if not src:
        return ""
    return f"{src['file']}:{src['row']}" if isinstance(src["row"], int) else f"{src['file']}: {src['row']}"


# ----------------------------------------------------------------------------- text decoding
def _read_utf8_bytes(path: Path) -> bytes:
    """The file's bytes without a UTF-8 BOM; UTF-16/32 files are an error (say so, do not guess)."""
    if not path.exists():
        raise DataError(f"captions file not found: {path}")
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DataError(f"{path}: file is UTF-16/UTF-32 encoded; save it as UTF-8")
    return data[len(_BOM) :] if data.startswith(_BOM) else data


def _utf8_error(path: Path, data: bytes, e: UnicodeDecodeError, base: int = 0) -> str:
    """``path:line: not valid UTF-8 (byte offset N: b'\\xe9')`` for a decode error at ``base + e.start``."""
    off = base + e.start
    line = data.count(b"\n", 0, off) + 1
    return f"{path}:{line}: not valid UTF-8 (byte offset {off}: {data[off : off + 1]!r}); save the file as UTF-8"


def _decode_all(path: Path) -> str:
    """The whole file as text; :class:`DataError` naming line and byte offset if it is not UTF-8."""
    data = _read_utf8_bytes(path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(_utf8_error(path, data, e)) from None


def _lines(path: Path, bad: Callable[[int, str], None]) -> Iterator[tuple[int, str | None]]:
    """(1-based line number, text) of each non-blank line; a line that is not UTF-8 goes to ``bad``
    and is yielded with text None (so that it still counts as a row).

    Lines end at ``\\n`` only (a U+2028 inside a JSON string is not a line break).
    """
    data = _read_utf8_bytes(path)
    pos = 0
    for n, raw in enumerate(data.split(b"\n"), start=1):
        start, pos = pos, pos + len(raw) + 1
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad(
                n,
                f"not valid UTF-8 (byte offset {start + e.start}: {raw[e.start : e.start + 1]!r}); "
                f"save the file as UTF-8",
            )
            yield n, None
            continue
        line = line[:-1] if line.endswith("\r") else line
        if line.strip():
            yield n, line


# ----------------------------------------------------------------------------- readers
def _coco_id(v, path: Path, where: str, what: str):
    """A COCO id as written (int or string); anything else is a :class:`DataError`."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise DataError(f"{path}: {where}: '{what}' must be an integer or a string (got {_type_name(v)})")
    return v


def read_coco_captions(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """Images ``{id, file}`` and captions ``{id, image_id, caption}`` of a COCO captions JSON.

    Ids are kept as written (COCO's are ints). Each item also carries ``_src`` (file and
    ``images[i]``/``annotations[i]``) for messages; :func:`build_manifest` drops it.
    """
    path = Path(path)
    text = _decode_all(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{path}: missing or non-list key '{key}'")
    images = []
    for i, im in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
            raise DataError(f"{path}: {where} lacks 'id' or 'file_name'")
        if not isinstance(im["file_name"], str):
            raise DataError(f"{path}: {where}: 'file_name' is not a string (got {_type_name(im['file_name'])})")
        images.append(
            {
                "id": _coco_id(im["id"], path, where, "id"),
                "file": im["file_name"],
                "_src": {"file": str(path), "row": where},
            }
        )
    captions = []
    for i, an in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(an, dict) or not {"id", "image_id", "caption"} <= set(an):
            raise DataError(f"{path}: {where} lacks 'id', 'image_id' or 'caption'")
        captions.append(
            {
                "id": _coco_id(an["id"], path, where, "id"),
                "image_id": _coco_id(an["image_id"], path, where, "image_id"),
                "caption": an["caption"],
                "_src": {"file": str(path), "row": where},
            }
        )
    return images, captions


def _csv_rows(path: Path, delimiter: str, bad: Callable[[int, str], None]) -> Iterator[tuple[int, dict]]:
    """(first line of the record, {column: value}) of each CSV/TSV data row.

    The header is the first non-blank record. A row with more or fewer fields than the
    header, or with bytes that are not UTF-8, goes to ``bad``; quoting errors (an unclosed
    quote would swallow the rest of the file) are a :class:`DataError`.
    """
    data = _read_utf8_bytes(path)
    text = data.decode("utf-8", errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header, start = None, 1
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(
                f"{path}:{start}: cannot parse this row ({e}); a '\"' opened in a field must be "
                f"closed, and a field with a delimiter or newline must be quoted"
            ) from None
        line, start = start, reader.line_num + 1
        if not rec or all(not f.strip() for f in rec):
            continue
        bad_bytes = next((m for f in rec for m in [_SURROGATE.search(f)] if m), None)
        if header is None:
            if bad_bytes:
                raise DataError(f"{path}:{line}: header is not valid UTF-8; save the file as UTF-8")
            header = [h.strip() for h in rec]
            dup = [h for h, k in Counter(header).items() if k > 1]
            if dup:
                raise DataError(f"{path}:{line}: column {dup[0]!r} appears twice in the header")
            if "caption" not in header:
                raise DataError(f"{path}:{line}: no 'caption' column (header: {', '.join(header)})")
            continue
        if bad_bytes:
            byte = ord(bad_bytes.group()) - 0xDC00
            bad(line, f"not valid UTF-8 (byte {bytes([byte])!r}); save the file as UTF-8")
            yield line, None
            continue
        if len(rec) != len(header):
            hint = (
                "; an unquoted comma in a caption? put the field in double quotes"
                if len(rec) > len(header) and delimiter == ","
                else ""
            )
            bad(line, f"{len(rec)} fields, but the header has {len(header)} ({', '.join(header)}){hint}")
            yield line, None
            continue
        yield line, dict(zip(header, rec, strict=False))


def _jsonl_rows(path: Path, bad: Callable[[int, str], None]) -> Iterator[tuple[int, dict]]:
    """(line, object) of each non-blank JSON-lines line; malformed lines go to ``bad``."""
    for n, line in _lines(path, bad):
        if line is None:
            yield n, None
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            bad(n, f"malformed JSON line ({e})")
            yield n, None
            continue
        if not isinstance(row, dict):
            bad(n, f"expected a JSON object (got {_type_name(row)})")
            yield n, None
            continue
        yield n, row


def _table_rows(path: Path, bad: Callable[[int, str], None]) -> Iterator[tuple[int, dict]]:
    """(1-based line, row dict) of a captions table: CSV/TSV (header row), JSON-lines or plain text.

    A bad row is reported to ``bad`` and yielded as (line, None): it still counts as a row.
    """
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl_rows(path, bad)
    if suffix in (".csv", ".tsv"):
        return _csv_rows(path, "\t" if suffix == ".tsv" else ",", bad)
    if suffix == ".txt":
        return ((n, None if line is None else {"caption": line}) for n, line in _lines(path, bad))
    if not path.exists():
        raise DataError(f"captions file not found: {path}")
    raise DataError(f"{path}: unknown captions format (use .csv, .tsv, .jsonl or .txt)")


def _table_id(v) -> str | None:
    """An id cell as a string exactly as written (stripped); None when absent or empty.

    Raises ``TypeError`` for values that are not strings or integers (JSON floats, lists, ...).
    """
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        raise TypeError(_type_name(v))
    s = str(v).strip()
    return s or None


def concept_fields(row: dict) -> dict:
    """A caption row's optional ``concept`` and ``train_frequency`` (synthetic worlds): both or neither,
    the frequency a finite number >= 0 (a CSV cell is parsed). Raises ValueError saying what is wrong."""
    has = [k for k in ("concept", "train_frequency") if row.get(k) not in (None, "")]
    if not has:
        return {}
    if len(has) == 1:
        raise ValueError("'concept' and 'train_frequency' come together (one of them is missing)")
    try:
        freq = float(row["train_frequency"])
    except (TypeError, ValueError):
        raise ValueError(f"train_frequency is not a number (got {row['train_frequency']!r})") from None
    if not math.isfinite(freq) or freq < 0:
        raise ValueError(f"train_frequency must be finite and >= 0 (got {freq})")
    return {"concept": str(row["concept"]), "train_frequency": freq}


def read_caption_table(
    path: str | os.PathLike, need_image: bool = True, *, reject: Callable | None = None
) -> tuple[list[dict], list[dict]]:
    """Images and captions of a generic captions table.

    Columns: ``image`` (file name relative to the image root; required when ``need_image``),
    ``caption``; optional ``image_id`` (default: the file name) and ``caption_id`` (default:
    the 0-based data-row number, only when no row has one). Ids are strings as written.

    A bad row (wrong field count, not UTF-8, malformed JSON line, no image, an id that is
    not a string/integer, one file given two ids) is a :class:`DataError` naming
    ``path:line``, or, when ``reject`` (a :class:`_Rejects`) is given, reported to it as
    kind ``row``. Each caption carries ``_file`` (its row's image file: captions are linked
    to images by file) and ``_src`` (file and line); :func:`build_manifest` drops both.
    """
    path = Path(path)

    def bad(line: int, reason: str) -> None:
        if reject is None:
            raise DataError(f"{path}:{line}: {reason}")
        reject("row", f"{path.name}:{line}", reason, {"file": str(path), "row": line})

    rows = []
    for index, (line, row) in enumerate(_table_rows(path, bad)):
        if row is None:
            continue
        if "caption" not in row:
            bad(line, "no 'caption' field")
            continue
        try:
            cid = _table_id(row.get("caption_id"))
        except TypeError as e:
            bad(line, f"caption_id must be a string or an integer (got {e})")
            continue
        try:
            meta = concept_fields(row)
        except ValueError as e:
            bad(line, str(e))
            continue
        rows.append((index, line, row, cid, meta))
    with_cid = [r for r in rows if r[3] is not None]
    if with_cid and len(with_cid) != len(rows):
        first = next(r for r in rows if r[3] is None)
        raise DataError(
            f"{path}:{first[1]}: this row has no caption_id, but other rows have one "
            f"(give every row a caption_id, or none)"
        )

    images: OrderedDict[str, dict] = OrderedDict()
    captions = []
    for index, line, row, cid, meta in rows:
        src = {"file": str(path), "row": line}
        image_id, file = None, None
        if need_image:
            raw = row.get("image")
            if raw is None or (isinstance(raw, str) and not raw.strip()):
                bad(line, "no 'image' file name")
                continue
            if not isinstance(raw, str):
                bad(line, f"image is not a string (got {_type_name(raw)})")
                continue
            file = raw.strip()
            try:
                file = safe_relpath(file)  # sub/./a.jpg and a.jpg are one file
            except UnsafePathError:
                pass  # kept as written: build_manifest refuses it, naming this row
            try:
                image_id = _table_id(row.get("image_id"))
            except TypeError as e:
                bad(line, f"image_id must be a string or an integer (got {e})")
                continue
            image_id = file if image_id is None else image_id
            prev = images.get(file)
            if prev is None:
                images[file] = {"id": image_id, "file": file, **meta, "_src": src}
            elif prev["id"] != image_id:
                bad(line, f"image {file} has two ids: {prev['id']!r} (line {prev['_src']['row']}) and {image_id!r}")
                continue
            elif meta and prev.get("concept") != meta["concept"]:
                bad(line, f"image {file} shows two concepts: {prev.get('concept')!r} and {meta['concept']!r}")
                continue
        captions.append(
            {
                "id": cid if cid is not None else str(index),
                "image_id": image_id,
                "caption": row["caption"],
                **meta,
                "_file": file,
                "_src": src,
            }
        )
    return list(images.values()), captions


def list_image_folder(root: str | os.PathLike) -> list[dict]:
    """Images of a folder (top level) or zip (every member) sorted by name; id = the relative name."""
    src = ImageSource(root)
    if not src.exists():
        raise DataError(f"image folder not found: {root}")
    try:
        src.check()
    except BadImageError as e:
        raise DataError(str(e)) from None
    names = sorted(n for n in src.names() if Path(n).suffix.lower() in IMAGE_SUFFIXES)
    return [{"id": n, "file": n} for n in names]


# ----------------------------------------------------------------------------- manifest
class _Rejects:
    """Collects rejected items (policy ``skip``) or raises :class:`DataError` (policy ``error``)."""

    def __init__(self, policy: str, dataset: str):
        if policy not in ("error", "skip"):
            raise ValueError(f"on_bad_item must be 'error' or 'skip', got {policy!r}")
        self.policy, self.dataset, self.items = policy, dataset, []

    def __call__(self, kind: str, item, reason: str, src: dict | None = None) -> None:
        where = _where(src)
        if kind == "row":
            msg = f"dataset {self.dataset!r}: {where}: {reason}"
        else:
            msg = f"dataset {self.dataset!r}: {where + ': ' if where else ''}{kind} {item!r}: {reason}"
        if self.policy == "error":
            raise DataError(msg + " (set on_bad_item: skip to log and skip such items)")
        log.warning("skipped %s", msg)
        entry = {"kind": kind, "item": item, "reason": reason + (f" ({where})" if where else "")}
        if src:
            entry.update(file=src["file"], row=src["row"])
        self.items.append(entry)


def _public(item: dict) -> dict:
    """The item without its internal ``_`` keys."""
    return {k: v for k, v in item.items() if not k.startswith("_")}


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
    rejects: _Rejects | None = None,
) -> dict:
    """Check images and captions against each other and the image files; return the manifest.

    Checks, in order: duplicate image ids, image files (missing, leaving the image root,
    ambiguous in a zip; each kept file is hashed, one streaming read, into ``sha256``),
    duplicate caption ids, captions that are not strings or empty, captions whose image is
    absent or rejected, images without captions. A caption with ``_file`` (from a table)
    belongs to that image file; otherwise it is linked by ``image_id``. Caption order
    (annotation order) is kept; ``captions_per_image`` keeps the first k per image.
    ``rejects`` carries on a :class:`_Rejects` that already holds rows rejected while reading.

    Raises :class:`DataError` when nothing is left to embed.
    """
    reject = rejects if rejects is not None else _Rejects(policy, dataset)
    src = ImageSource(image_root) if image_root is not None else None
    if src is not None:
        if not src.exists():
            raise DataError(f"dataset {dataset!r}: image source not found: {image_root}")
        try:
            src.check()
        except BadImageError as e:
            raise DataError(f"dataset {dataset!r}: {e}") from None

    kept_images, first_of_id, rejected_why = [], {}, {}
    for im in images:
        where = im.get("_src")
        first = first_of_id.get(im["id"])
        if first is not None:
            why = f"duplicate image id {im['id']!r}: {im['file']} has the same id as {first['file']}"
            if first.get("_src"):
                why += f" ({_where(first['_src'])})"
            rejected_why[im["file"]] = why
            reject("image", im["id"], why, where)
            continue
        entry = _public(im)
        if src is not None:
            try:
                entry["sha256"] = src.sha256(im["file"])
            except BadImageError as e:
                rejected_why[im["file"]] = str(e)
                reject("image", im["id"], str(e), where)
                continue
        first_of_id[im["id"]] = im
        kept_images.append(entry)
    image_ids = {im["id"] for im in kept_images}
    kept_by_file = {im["file"]: im for im in kept_images}
    all_image_ids = {im["id"] for im in images}

    kept_caps, seen_caps, per_image = [], set(), Counter()
    n_trimmed = 0
    for c in captions:
        where = c.get("_src")
        if c["id"] in seen_caps:
            reject("caption", c["id"], "duplicate caption id", where)
            continue
        seen_caps.add(c["id"])
        text = c["caption"]
        if not isinstance(text, str):
            reject("caption", c["id"], f"caption is not a string (got {_type_name(text)})", where)
            continue
        if not text.strip():
            reject("caption", c["id"], "empty caption", where)
            continue
        image_id = c["image_id"]
        if require_images:
            if c.get("_file") is not None:
                target = kept_by_file.get(c["_file"])
                if target is None:
                    reject(
                        "caption",
                        c["id"],
                        f"its image {c['_file']} was rejected: {rejected_why.get(c['_file'], 'not in the dataset')}",
                        where,
                    )
                    continue
                image_id = target["id"]
            elif image_id not in image_ids:
                why = (
                    "its image was rejected"
                    if image_id in all_image_ids
                    else f"its image id {image_id!r} is not in the dataset"
                )
                reject("caption", c["id"], why, where)
                continue
        if captions_per_image is not None and image_id is not None:
            if per_image[image_id] >= captions_per_image:
                n_trimmed += 1
                continue
        per_image[image_id] += 1
        entry = {"id": c["id"], "image_id": image_id, "caption": text.strip()}
        entry.update({k: c[k] for k in ("concept", "train_frequency") if k in c})  # synthetic worlds
        kept_caps.append(entry)

    if require_captions:
        final_images = []
        for im in kept_images:
            if per_image[im["id"]] == 0:
                reject("image", im["id"], f"image has no captions ({im['file']})", first_of_id[im["id"]].get("_src"))
                continue
            final_images.append(im)
        kept_images = final_images

    paired = require_images and require_captions
    if (not kept_images and not kept_caps) or (paired and not kept_caps):
        reasons = "; ".join(f"{r['kind']} {r['item']!r}: {r['reason']}" for r in reject.items[:_FIRST_REASONS])
        raise DataError(
            f"dataset {dataset!r}: nothing left to embed: {len(images)} images and {len(captions)} captions "
            f"in the source, {len(reject.items)} items rejected" + (f"; first: {reasons}" if reasons else "")
        )

    counts = {
        "images": len(kept_images),
        "captions": len(kept_caps),
        "images_in_source": len(images),
        "captions_in_source": len(captions),
        "rejected": len(reject.items),
        "captions_beyond_k": n_trimmed,
    }
    log.info(
        "dataset %r: %d images, %d captions kept; %d rejected; %d captions beyond k=%s dropped",
        dataset,
        counts["images"],
        counts["captions"],
        counts["rejected"],
        n_trimmed,
        captions_per_image,
    )
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
    """Build the manifest of one configured dataset (``cfg`` is its config block).

    Every :class:`DataError` names the dataset (file-level errors of the readers get it prefixed).
    """
    try:
        return _manifest_for(dataset, cfg, demo_root)
    except DataError as e:
        if str(e).startswith("dataset "):
            raise
        raise DataError(f"dataset {dataset!r}: {e}") from None


def _manifest_for(dataset: str, cfg: dict, demo_root: str | os.PathLike | None) -> dict:
    kind = cfg["kind"]
    policy = cfg.get("on_bad_item", "error")
    k = cfg.get("captions_per_image")
    reject = _Rejects(policy, dataset)
    if kind == "coco":
        images, captions = read_coco_captions(cfg["captions"])
        source = {"captions": cfg["captions"], "captions_sha256": sha256_file(cfg["captions"]), "images": cfg["images"]}
        return build_manifest(
            dataset,
            images,
            captions,
            image_root=cfg["images"],
            policy=policy,
            captions_per_image=k,
            source=source,
            rejects=reject,
        )
    if kind in ("folder", "demo", "world"):
        # demo and world datasets are generated by the workflow under demo_root
        captions_path = cfg["captions"] if kind == "folder" else Path(demo_root) / "captions.jsonl"
        image_root = cfg["images"] if kind == "folder" else Path(demo_root) / "images"
        images, captions = read_caption_table(captions_path, reject=reject)
        source = {
            "captions": str(captions_path),
            "captions_sha256": sha256_file(captions_path),
            "images": str(image_root),
        }
        return build_manifest(
            dataset,
            images,
            captions,
            image_root=image_root,
            policy=policy,
            captions_per_image=k,
            source=source,
            rejects=reject,
        )
    if kind == "images":
        images = list_image_folder(cfg["images"])
        return build_manifest(
            dataset,
            images,
            [],
            image_root=cfg["images"],
            policy=policy,
            require_captions=False,
            source={"images": cfg["images"]},
            rejects=reject,
        )
    if kind == "captions":
        _, captions = read_caption_table(cfg["captions"], need_image=False, reject=reject)
        source = {"captions": cfg["captions"], "captions_sha256": sha256_file(cfg["captions"])}
        return build_manifest(
            dataset,
            [],
            captions,
            image_root=None,
            policy=policy,
            require_images=False,
            require_captions=False,
            source=source,
            rejects=reject,
        )
    raise DataError(f"dataset {dataset!r}: kind {kind!r} has no manifest (imported embeddings?)")


def image_root_for(cfg: dict, demo_root: str | os.PathLike | None = None) -> str | None:
    """Where a dataset's images are read from (None for caption-only sets)."""
    if cfg["kind"] in ("demo", "world"):
        return str(Path(demo_root) / "images")
    return cfg.get("images")


def manifest_checksum(manifest: dict) -> str:
    """sha256 of the manifest's content (what gets embedded, in order)."""
    payload = json.dumps({k: manifest[k] for k in ("images", "captions", "source")}, sort_keys=True)
    return sha256_hex(payload.encode())


def shard_slice(n: int, shard: int, n_shards: int) -> slice:
    """Rows of shard ``shard`` (1-based) of ``n_shards`` near-equal contiguous slices of n rows."""
    if not 1 <= shard <= n_shards:
        raise ValueError(f"shard {shard} not in 1..{n_shards}")
    bounds = [round(i * n / n_shards) for i in range(n_shards + 1)]
    return slice(bounds[shard - 1], bounds[shard])


# ----------------------------------------------------------------------------- download
# COCO publishes no checksums for its archives. These sizes and sha256 digests are the ones that other projects'
# download code records for the official files (torchvision's prototype COCO dataset and several others agree);
# they could not be checked against a download here (no network). Every download is checked against them, and so
# is an archive already on disk before it is reused. An archive of another name (a mirror, another release) is
# checked against the size and sha256 recorded beside it at its first download: <archive>.sha256.json.
KNOWN_ARCHIVES = {
    "val2017.zip": (815_585_330, "4f7e2ccb2866ec5041993c9cf2a952bbed69647b115d0f74da7ce8f4bef82f05"),
    "annotations_trainval2017.zip": (
        252_907_541,
        "113a836d90195ee1f884e704da6304dfaaecff1f023f49b6ca93c4aaae470268",
    ),
}
_DOWNLOAD_CHUNK = 1 << 22


class _Counted:
    """A binary reader that counts (and progress-reports) what passes through it, copying it to ``out``."""

    def __init__(self, src, bar, out=None):
        self.src, self.bar, self.out, self.n = src, bar, out, 0

    def read(self, size: int = -1) -> bytes:
        block = self.src.read(size)
        if block:
            if self.out is not None:
                self.out.write(block)
            self.n += len(block)
            self.bar.update(len(block))
        return block


def checksum_sidecar(path: str | os.PathLike) -> Path:
    """Where the size and sha256 of a downloaded archive are recorded: ``<archive>.sha256.json`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256.json")


def expected_checksum(path: str | os.PathLike) -> tuple[int, str, str] | None:
    """``(bytes, sha256, where from)`` the archive ``path`` must have: :data:`KNOWN_ARCHIVES` by file name,
    else its sidecar (:func:`checksum_sidecar`), else None (nothing known yet)."""
    path = Path(path)
    if path.name in KNOWN_ARCHIVES:
        size, sha = KNOWN_ARCHIVES[path.name]
        return size, sha, f"the known checksum of COCO's {path.name}"
    side = checksum_sidecar(path)
    if side.is_file():
        try:
            rec = json.loads(side.read_text())
            return int(rec["bytes"]), str(rec["sha256"]), f"{side} (recorded at its first download)"
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{side}: unreadable checksum record ({e}); delete it to record it anew") from None
    return None


def _check_archive(path: Path, size: int, sha: str, what: str, want, url: str | None = None) -> None:
    if want is None or (size, sha) == (want[0], want[1]):
        return
    got = f"{size:,} bytes, sha256 {sha}"
    exp = f"{want[0]:,} bytes, sha256 {want[1]}"
    if url is not None:
        raise DataError(
            f"{path}: the {what} downloaded from {url} is not the expected file: got {got}, expected {exp} "
            f"({want[2]}). Nothing was kept; run again, or download it elsewhere and put it at {path}."
        )
    raise DataError(
        f"{path}: this {what} does not match its checksum: got {got}, expected {exp} ({want[2]}). "
        "The file is damaged or another release: delete it to download it again."
    )


def _record(path: Path, url: str, size: int, sha: str, source: str) -> None:
    side = checksum_sidecar(path)
    if not side.exists():
        rec = {"file": path.name, "url": url, "bytes": size, "sha256": sha, "source": source}
        tmp = side.with_name(side.name + ".part")
        tmp.write_text(json.dumps(rec, indent=2) + "\n")
        os.replace(tmp, side)


def download(url: str, dest: str | os.PathLike, what: str, progress=None) -> Path:
    """Fetch ``url`` to ``dest`` (temporary name, renamed when complete) and check its size and sha256.

    The expected values are :data:`KNOWN_ARCHIVES` (COCO publishes none: see there) or, for another file
    name, those recorded at its first download (:func:`checksum_sidecar`); a file already at ``dest`` is
    checked the same way and reused instead of fetched again. A mismatch is a :class:`DataError` naming the
    file; a downloaded file that fails is not kept. Progress lines (bytes, rate, ETA) go to ``progress``
    (default: the job's log).
    """
    from .hashing import sha256_stream
    from .progress import Progress

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    want = expected_checksum(dest)
    if dest.exists():
        with open(dest, "rb") as fh:
            bar = Progress(dest.stat().st_size, f"sha256 of {dest.name} (already here)", "B", progress)
            reader = _Counted(fh, bar)
            sha = sha256_stream(reader, _DOWNLOAD_CHUNK)
            bar.close()
        _check_archive(dest, reader.n, sha, what, want)
        _record(dest, url, reader.n, sha, "found on disk before any download: recorded, not verified")
        log.info("reusing %s (%d bytes, sha256 %s; %s)", dest, reader.n, sha, want[2] if want else "recorded now")
        return dest
    tmp = dest.with_name(dest.name + ".part")
    log.info("downloading %s from %s to %s", what, url, dest)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(tmp, "wb") as fh:
            length = r.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            bar = Progress(
                length if length is not None else (want[0] if want else None), f"download {dest.name}", "B", progress
            )
            reader = _Counted(r, bar, out=fh)
            sha = sha256_stream(reader, _DOWNLOAD_CHUNK)
            bar.close()
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"could not download {what} from {url} ({e}). Without network, download it elsewhere "
            f"and put it at {dest} (or point the dataset's config at your copy)."
        ) from None
    if length is not None and reader.n != length:
        tmp.unlink(missing_ok=True)
        raise DataError(
            f"{dest}: the download of {what} from {url} stopped at {reader.n:,} of {length:,} bytes; run again"
        )
    try:
        _check_archive(dest, reader.n, sha, what, want, url=url)
    except DataError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, dest)
    _record(dest, url, reader.n, sha, want[2] if want else "first download")
    log.info(
        "downloaded %s: %d bytes, sha256 %s (%s)",
        dest,
        reader.n,
        sha,
        "checked against " + want[2] if want else "recorded",
    )
    return dest


def download_coco(
    images_url: str, annotations_url: str, member: str, captions_out: str | os.PathLike, images_out: str | os.PathLike
) -> None:
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
