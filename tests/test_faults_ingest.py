"""Fault table for ingestion: every kind of bad input, built in tmp_path, and what the user sees.

Each case: an id, a builder ``build(tmp_path, request) -> run(policy)`` and the expected outcome:

- ``("error", regex)``: ``run(case.policy)`` raises ``case.exc`` whose message matches ``regex``
  (the regex names the culprit: file and row, or the id);
- ``("skip", regex, check)``: under ``on_bad_item: error`` it raises matching ``regex``; under
  ``skip`` it returns a manifest for which ``check(manifest)`` holds: the bad items are listed in
  ``rejects`` and the kept items are exactly the good ones (a silent drop fails the check);
- ``("ok", check)``: ``run("error")`` returns something (manifest, image) for which ``check`` holds.

Cases with ``old_ok=True`` already behaved well before the fault-injection fixes; every other
case failed on the old code.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import warnings
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from clipgeom.data import DataError, manifest_checksum, manifest_for
from clipgeom.imagesource import BadImageError, ImageSource, decode_image, to_rgb


@dataclass
class Case:
    id: str
    build: Callable[[Path, Any], Callable[[str], Any]]
    expect: tuple
    policy: str = "error"
    exc: type = DataError
    old_ok: bool = False


# ----------------------------------------------------------------------------- builders
def _img(path: Path, colour=(10, 120, 200), size=(8, 8), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, format=fmt)
    return path


def _folder(tmp: Path, table: str | bytes | list, images=(), suffix=".csv"):
    """A folder dataset: images (distinct colours) in tmp/img and a captions file; run(policy) -> manifest."""
    for i, name in enumerate(images):
        _img(tmp / "img" / name, (20 * i % 256, 100, 255 - 20 * i % 256))
    cap = tmp / f"c{suffix}"
    if isinstance(table, list):
        table = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in table)
    cap.write_bytes(table if isinstance(table, bytes) else table.encode("utf-8"))
    cfg = {"kind": "folder", "captions": str(cap), "images": str(tmp / "img")}
    return lambda policy: manifest_for("d", {**cfg, "on_bad_item": policy})


def _coco(tmp: Path, images: list, annotations: list, files=(), raw: bytes | None = None, root=None):
    for f in files:
        _img(tmp / "val2017" / f)
    cap = tmp / "captions.json"
    cap.write_bytes(raw if raw is not None else json.dumps({"images": images, "annotations": annotations}).encode())
    cfg = {"kind": "coco", "captions": str(cap), "images": str(root or tmp / "val2017")}
    return lambda policy: manifest_for("d", {**cfg, "on_bad_item": policy})


def _caps(m) -> list[tuple]:
    return [(c["image_id"], c["caption"]) for c in m["captions"]]


def _rej(m) -> set[tuple]:
    return {(r["kind"], r["item"]) for r in m["rejects"]}


def _check(*conds) -> bool:
    return all(conds)


# -- 1. duplicate image id in a folder table
def b_dup_id(tmp, req):
    return _folder(tmp, "image,image_id,caption\na.jpg,6,cat\nb.jpg,6,dog\nc.jpg,7,bird\n", ["a.jpg", "b.jpg", "c.jpg"])


def c_dup_id(m):
    reasons = {(r["kind"], r["item"]): r["reason"] for r in m["rejects"]}
    return _check(
        _caps(m) == [("6", "cat"), ("7", "bird")],
        _rej(m) == {("image", "6"), ("caption", "1")},
        "b.jpg" in reasons[("image", "6")] and "a.jpg" in reasons[("image", "6")],
        "b.jpg" in reasons[("caption", "1")],
        [im["file"] for im in m["images"]] == ["a.jpg", "c.jpg"],
    )


def b_two_ids_one_file(tmp, req):
    return _folder(tmp, "image,image_id,caption\na.jpg,6,cat\na.jpg,7,dog\nc.jpg,8,bird\n", ["a.jpg", "c.jpg"])


# -- 2. sha256 of every image
def b_sha_folder(tmp, req):
    run = _folder(tmp, "image,caption\na.jpg,one\nb.png,two\n", ["a.jpg", "b.png"])

    def go(policy):
        m1 = run(policy)
        _img(tmp / "img" / "a.jpg", (250, 0, 0))  # overwritten in place, same name
        return m1, run(policy)

    return go


def c_sha_folder(ms):
    m1, m2 = ms
    root = Path(m1["source"]["images"])
    return _check(
        all(len(im.get("sha256", "")) == 64 for im in m1["images"]),
        m2["images"][0]["sha256"] == hashlib.sha256((root / "a.jpg").read_bytes()).hexdigest(),
        m2["images"][1]["sha256"] == m1["images"][1]["sha256"],
        m1["images"][0]["sha256"] != m2["images"][0]["sha256"],
        manifest_checksum(m1) != manifest_checksum(m2),
    )


def b_sha_zip(tmp, req):
    a = _img(tmp / "a.jpg").read_bytes()
    with zipfile.ZipFile(tmp / "val2017.zip", "w") as zf:
        zf.writestr("val2017/000000000001.jpg", a)
    run = _coco(
        tmp,
        [{"id": 1, "file_name": "000000000001.jpg"}],
        [{"id": 5, "image_id": 1, "caption": "x"}],
        root=tmp / "val2017.zip",
    )
    return lambda policy: (run(policy), hashlib.sha256(a).hexdigest())


# -- 3. high-bit-depth images
GRAD16 = (np.arange(4 * 256).reshape(4, 256) * 64).astype(np.uint16)  # 0 .. 65472


def b_png16(tmp, req):
    Image.fromarray(GRAD16).save(tmp / "g16.png")  # a real 16-bit grayscale PNG
    return lambda policy: ImageSource(tmp).open("g16.png")


def _rgb_equals(expected: np.ndarray):
    want = np.clip(np.rint(expected), 0, 255).astype(np.uint8)
    return lambda img: _check(img.mode == "RGB", all(np.array_equal(np.asarray(img)[..., k], want) for k in range(3)))


def b_i16b(tmp, req):
    return lambda policy: to_rgb(Image.frombytes("I;16B", (256, 4), GRAD16.astype(">u2").tobytes()))


def b_int32_small(tmp, req):
    return lambda policy: to_rgb(Image.fromarray(GRAD16.astype(np.int32)))


INT32_BIG = (np.arange(4 * 256).reshape(4, 256).astype(np.int64) * 2_000_000 - 10_000_000).astype(np.int32)


def b_int32_big(tmp, req):
    return lambda policy: to_rgb(Image.fromarray(INT32_BIG))


FLOAT_UNIT = (np.arange(4 * 256).reshape(4, 256) / 1023.0).astype(np.float32)
FLOAT_WIDE = (np.arange(4 * 256).reshape(4, 256) / 100.0 - 3.0).astype(np.float32)


def b_float_unit(tmp, req):
    return lambda policy: to_rgb(Image.fromarray(FLOAT_UNIT))


def b_float_wide(tmp, req):
    return lambda policy: to_rgb(Image.fromarray(FLOAT_WIDE))


def _minmax(a):
    a = a.astype(np.float64)
    return (a - a.min()) / (a.max() - a.min()) * 255


# -- 4. paths leaving the image root
def _escape(name_of: Callable[[Path], str]):
    def build(tmp, req):
        _img(tmp / "outside.jpg", (1, 2, 3))
        bad = name_of(tmp)
        run = _folder(tmp, f"image,caption\nok.jpg,fine\n{bad},stolen\n", ["ok.jpg"])
        (tmp / "img" / "sub").mkdir()  # so that sub/../../outside.jpg really resolves to the outside file
        return run

    return build


def c_escape(m):
    rej = {r["kind"] for r in m["rejects"]}
    return _check(
        _caps(m) == [("ok.jpg", "fine")],
        rej == {"image", "caption"},
        len(m["rejects"]) == 2,
        all(r.get("row") == 3 for r in m["rejects"]),
    )


def b_symlink(tmp, req):
    _img(tmp / "outside.jpg", (1, 2, 3))
    run = _folder(tmp, "image,caption\nok.jpg,fine\nlink.jpg,stolen\n", ["ok.jpg"])
    os.symlink(tmp / "outside.jpg", tmp / "img" / "link.jpg")
    return run


def b_subfolder_ok(tmp, req):
    return _folder(tmp, "image,caption\nsub/a.jpg,one\nsub/deeper/b.jpg,two\n", ["sub/a.jpg", "sub/deeper/b.jpg"])


def b_same_file_spelled_twice(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,one\nsub/../a.jpg,two\n./a.jpg,three\n", ["a.jpg"])


def b_src_read_unsafe(tmp, req):
    _img(tmp / "secret.jpg")
    (tmp / "img").mkdir()
    return lambda policy: ImageSource(tmp / "img").read_bytes("../secret.jpg")


def b_src_has_unsafe(tmp, req):
    _img(tmp / "secret.jpg")
    _img(tmp / "img" / "ok.jpg")
    os.symlink(tmp / "secret.jpg", tmp / "img" / "link.jpg")
    src = ImageSource(tmp / "img")
    return lambda policy: {
        n: src.has(n) for n in ("ok.jpg", "../secret.jpg", str(tmp / "secret.jpg"), "link.jpg", "x/../../secret.jpg")
    }


# -- 5. CSV field counts and quoting
def b_unquoted_comma(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,a cat\nimg.jpg,a dog, a cat\n", ["a.jpg", "img.jpg"])


def c_row3_rejected(m):
    rows = [r for r in m["rejects"] if r["kind"] == "row"]
    return _check(
        len(rows) == 1, rows[0]["row"] == 3, rows[0]["file"].endswith("c.csv"), _caps(m) == [("a.jpg", "a cat")]
    )


def b_too_few_fields(tmp, req):
    return _folder(tmp, "image,image_id,caption\na.jpg,1,a cat\nb.jpg,dog\n", ["a.jpg", "b.jpg"])


def b_unclosed_quote(tmp, req):
    return _folder(tmp, 'image,caption\na.jpg,"a cat\nb.jpg,a dog\nc.jpg,a bird\n', ["a.jpg", "b.jpg", "c.jpg"])


# -- 6. zip member matching
def _two_members(tmp):
    with zipfile.ZipFile(tmp / "val2017.zip", "w") as zf:
        zf.writestr("other/X.jpg", _img(tmp / "o.jpg", (255, 0, 0)).read_bytes())
        zf.writestr("val2017/X.jpg", _img(tmp / "v.jpg", (0, 0, 255)).read_bytes())
        zf.writestr("val2017/Y.jpg", _img(tmp / "y.jpg", (0, 255, 0)).read_bytes())


def b_zip_ambiguous(tmp, req):
    _two_members(tmp)
    return _coco(
        tmp,
        [{"id": 1, "file_name": "X.jpg"}, {"id": 2, "file_name": "Y.jpg"}],
        [{"id": 10, "image_id": 1, "caption": "x"}, {"id": 11, "image_id": 2, "caption": "y"}],
        root=tmp / "val2017.zip",
    )


def c_zip_ambiguous(m):
    r = {(x["kind"], x["item"]): x["reason"] for x in m["rejects"]}
    return _check(
        _caps(m) == [(2, "y")],
        set(r) == {("image", 1), ("caption", 10)},
        "other/X.jpg" in r[("image", 1)] and "val2017/X.jpg" in r[("image", 1)],
    )


def b_zip_exact(tmp, req):
    _two_members(tmp)
    src = ImageSource(tmp / "val2017.zip")
    return lambda policy: (
        src.read_bytes("val2017/X.jpg"),
        (tmp / "v.jpg").read_bytes(),
        src.read_bytes("Y.jpg"),
        (tmp / "y.jpg").read_bytes(),
    )


def b_images_zip(tmp, req):
    with zipfile.ZipFile(tmp / "gen.zip", "w") as zf:
        for n in ("a", "b"):
            zf.writestr(f"val2017/{n}.jpg", _img(tmp / f"{n}.jpg").read_bytes())
    return lambda policy: manifest_for("g", {"kind": "images", "images": str(tmp / "gen.zip"), "on_bad_item": policy})


# -- 7. ids as written
def b_images_1_001(tmp, req):
    for n in ("1.png", "001.png"):
        _img(tmp / "gen" / n)
    return lambda policy: manifest_for("g", {"kind": "images", "images": str(tmp / "gen"), "on_bad_item": policy})


def b_a_jpg_a_png(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,jpeg one\na.png,png one\n", ["a.jpg", "a.png"])


def b_caption_01_1(tmp, req):
    return _folder(tmp, "image,caption_id,caption\na.jpg,01,first\na.jpg,1,second\n", ["a.jpg"])


def b_caption_id_mixed(tmp, req):
    return _folder(tmp, "image,caption_id,caption\na.jpg,1,first\nb.jpg,,second\n", ["a.jpg", "b.jpg"])


def b_superscript(tmp, req):
    return _folder(tmp, "image,image_id,caption\na.jpg,\u00b2,squared\n", ["a.jpg"])


def b_demo(tmp, req):
    from clipgeom.demo import make_demo_dataset

    make_demo_dataset(tmp / "demo", n_images=4, captions_per_image=2, image_size=16)
    return lambda policy: manifest_for("demo", {"kind": "demo", "on_bad_item": policy}, demo_root=tmp / "demo")


def b_coco_real(tmp, req):
    raw = json.loads((req.getfixturevalue("shared_data") / "coco-val2017" / "captions_val2017.json").read_text())
    images = raw["images"][:20]
    ids = {im["id"] for im in images}
    anns = [a for a in raw["annotations"] if a["image_id"] in ids]
    return _coco(tmp, images, anns, files=[im["file_name"] for im in images])


# -- 8. encodings
def b_csv_latin1(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,a cat\nb.jpg,un caf\u00e9\n".encode("latin-1"), ["a.jpg", "b.jpg"])


def b_jsonl_latin1(tmp, req):
    text = '{"image": "a.jpg", "caption": "a cat"}\n{"image": "b.jpg", "caption": "un caf\u00e9"}\n'
    return _folder(tmp, text.encode("latin-1"), ["a.jpg", "b.jpg"], suffix=".jsonl")


def c_jsonl_row2(m):
    rows = [r for r in m["rejects"] if r["kind"] == "row"]
    return _check(len(m["rejects"]) == 1, rows[0]["row"] == 2, _caps(m) == [("a.jpg", "a cat")])


def b_coco_latin1(tmp, req):
    doc = json.dumps(
        {
            "images": [{"id": 1, "file_name": "a.jpg"}],
            "annotations": [{"id": 2, "image_id": 1, "caption": "caf\u00e9"}],
        },
        ensure_ascii=False,
        indent=1,
    )
    return _coco(tmp, [], [], files=["a.jpg"], raw=doc.encode("latin-1"))


def b_csv_bom(tmp, req):
    return _folder(tmp, b"\xef\xbb\xbfimage,caption\na.jpg,a cat\n", ["a.jpg"])


def b_jsonl_bom(tmp, req):
    return _folder(tmp, b'\xef\xbb\xbf{"image": "a.jpg", "caption": "a cat"}\n', ["a.jpg"], suffix=".jsonl")


def b_coco_bom(tmp, req):
    doc = json.dumps(
        {"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"id": 2, "image_id": 1, "caption": "c"}]}
    )
    return _coco(tmp, [], [], files=["a.jpg"], raw=b"\xef\xbb\xbf" + doc.encode())


def b_csv_utf16(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,a cat\n".encode("utf-16"), ["a.jpg"])


def b_jsonl_u2028(tmp, req):
    return _folder(tmp, [{"image": "a.jpg", "caption": "line\u2028separator"}], ["a.jpg"], suffix=".jsonl")


# -- 9. captions that are not strings
def b_jsonl_caption(value):
    def build(tmp, req):
        return _folder(
            tmp,
            [{"image": "a.jpg", "caption": value}, {"image": "b.jpg", "caption": "fine"}],
            ["a.jpg", "b.jpg"],
            suffix=".jsonl",
        )

    return build


def c_not_string(type_name):
    def check(m):
        r = m["rejects"]
        return _check(
            _caps(m) == [("b.jpg", "fine")],
            _rej(m) == {("caption", "0"), ("image", "a.jpg")},
            any(f"caption is not a string (got {type_name})" in x["reason"] for x in r),
        )

    return check


def b_coco_caption_int(tmp, req):
    return _coco(
        tmp,
        [{"id": 1, "file_name": "a.jpg"}],
        [{"id": 2, "image_id": 1, "caption": "fine"}, {"id": 3, "image_id": 1, "caption": 5}],
        files=["a.jpg"],
    )


def b_empty_caption(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,fine\nb.jpg,\n", ["a.jpg", "b.jpg"])


# -- 10. nothing left
def b_all_missing(tmp, req):
    (tmp / "img").mkdir()
    return _folder(tmp, "image,caption\na.jpg,one\nb.jpg,two\n")


def b_header_only(tmp, req):
    return _folder(tmp, "image,caption\n", ["a.jpg"])


# -- 11. already clear errors
def b_coco_malformed(tmp, req):
    return _coco(tmp, [], [], files=["a.jpg"], raw=b'{"images": [], "annotations": [')


def b_coco_no_annotations(tmp, req):
    return _coco(tmp, [], [], files=["a.jpg"], raw=b'{"images": []}')


def b_jsonl_bad_line(tmp, req):
    return _folder(tmp, '{"image": "a.jpg", "caption": "x"}\n{broken\n', ["a.jpg"], suffix=".jsonl")


def b_no_caption_column(tmp, req):
    return _folder(tmp, "image,text\na.jpg,hello\n", ["a.jpg"])


def b_no_image_column(tmp, req):
    return _folder(tmp, "caption\nhello\n", ["a.jpg"])


def b_missing_file(tmp, req):
    return _folder(tmp, "image,caption\na.jpg,one\nb.jpg,two\n", ["a.jpg"])


# -- 12. bad image bytes
def _decode(tmp, name, data: bytes):
    (tmp / name).write_bytes(data)
    return lambda policy: ImageSource(tmp).open(name)


def _jpeg_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _png_bytes(size=(64, 64)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _bomb_png() -> bytes:
    """A 1x1 PNG whose IHDR (CRC fixed) claims 100000 x 100000 pixels."""
    b = bytearray(_png_bytes((1, 1)))
    ihdr = struct.pack(">II", 100_000, 100_000) + bytes(b[24:29])
    b[16:29] = ihdr
    b[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(b)


def b_bomb_warning(tmp, req):
    req.getfixturevalue("monkeypatch").setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 64x64 = 4096: 1x..2x
    (tmp / "big.png").write_bytes(_png_bytes())

    def go(policy):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            img = ImageSource(tmp).open("big.png")
        return img, [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]

    return go


# ----------------------------------------------------------------------------- the table
CASES = [
    # 1. a rejected image takes its captions with it
    Case(
        "dup-image-id-folder",
        b_dup_id,
        ("skip", r"c\.csv:3: image '6': duplicate image id '6': b\.jpg has the same id as a\.jpg", c_dup_id),
    ),
    Case(
        "one-file-two-ids",
        b_two_ids_one_file,
        (
            "skip",
            r"c\.csv:3: image a\.jpg has two ids: '6' \(line 2\) and '7'",
            lambda m: _caps(m) == [("6", "cat"), ("8", "bird")] and _rej(m) == {("row", "c.csv:3")},
        ),
    ),
    # 2. sha256 of every image in the manifest
    Case("sha256-folder-overwrite", b_sha_folder, ("ok", c_sha_folder)),
    Case("sha256-zip-member", b_sha_zip, ("ok", lambda r: r[0]["images"][0].get("sha256") == r[1])),
    # 3. high bit depth scaled, not clipped to white
    Case("png-16bit-gradient", b_png16, ("ok", _rgb_equals(GRAD16 / 257))),
    Case("mode-I;16B-gradient", b_i16b, ("ok", _rgb_equals(GRAD16 / 257))),
    Case("mode-I-16bit-range", b_int32_small, ("ok", _rgb_equals(GRAD16 / 257))),
    Case("mode-I-wide-range", b_int32_big, ("ok", _rgb_equals(_minmax(INT32_BIG)))),
    Case("mode-F-unit-range", b_float_unit, ("ok", _rgb_equals(FLOAT_UNIT.astype(np.float64) * 255))),
    Case("mode-F-wide-range", b_float_wide, ("ok", _rgb_equals(_minmax(FLOAT_WIDE)))),
    # 4. paths leaving the image root
    Case(
        "path-dotdot",
        _escape(lambda t: "../outside.jpg"),
        ("skip", r"c\.csv:3: image '\.\./outside\.jpg': image path leaves the image root", c_escape),
    ),
    Case(
        "path-absolute",
        _escape(lambda t: str(t / "outside.jpg")),
        ("skip", r"c\.csv:3: image '/.*outside\.jpg': image path is absolute", c_escape),
    ),
    Case(
        "path-etc-passwd",
        _escape(lambda t: "../" * 30 + "etc/passwd"),
        ("skip", r"c\.csv:3: image '(\.\./)+etc/passwd': image path leaves the image root", c_escape),
    ),
    Case(
        "path-sub-dotdot",
        _escape(lambda t: "sub/../../outside.jpg"),
        ("skip", r"c\.csv:3: image 'sub/\.\./\.\./outside\.jpg': image path leaves the image root", c_escape),
    ),
    Case(
        "path-symlink-out",
        b_symlink,
        ("skip", r"c\.csv:3: image 'link\.jpg': image path leaves the image root \(symlink\?\)", c_escape),
    ),
    Case(
        "path-subfolder-allowed",
        b_subfolder_ok,
        ("ok", lambda m: [im["file"] for im in m["images"]] == ["sub/a.jpg", "sub/deeper/b.jpg"]),
        old_ok=True,
    ),
    Case(
        "path-same-file-spelled-twice",
        b_same_file_spelled_twice,
        (
            "ok",
            lambda m: (
                _caps(m) == [("a.jpg", "one"), ("a.jpg", "two"), ("a.jpg", "three")]
                and [im["file"] for im in m["images"]] == ["a.jpg"]
            ),
        ),
    ),
    Case(
        "source-read-dotdot",
        b_src_read_unsafe,
        ("error", r"leaves the image root: \.\./secret\.jpg"),
        exc=BadImageError,
    ),
    Case("source-has-unsafe", b_src_has_unsafe, ("ok", lambda h: h == {k: k == "ok.jpg" for k in h})),
    # 5. CSV rows with the wrong number of fields
    Case(
        "csv-unquoted-comma",
        b_unquoted_comma,
        ("skip", r"c\.csv:3: 3 fields, but the header has 2 \(image, caption\); an unquoted comma", c_row3_rejected),
    ),
    Case(
        "csv-too-few-fields",
        b_too_few_fields,
        (
            "skip",
            r"c\.csv:3: 2 fields, but the header has 3",
            lambda m: _caps(m) == [("1", "a cat")] and _rej(m) == {("row", "c.csv:3")},
        ),
    ),
    Case(
        "csv-unclosed-quote", b_unclosed_quote, ("error", r"c\.csv:2: cannot parse this row \(unexpected end of data\)")
    ),
    # 6. zip: exact path first, unique base name only
    Case(
        "zip-ambiguous-basename",
        b_zip_ambiguous,
        (
            "skip",
            r"image 1: ambiguous image name X\.jpg: matches 2 members .*other/X\.jpg, val2017/X\.jpg",
            c_zip_ambiguous,
        ),
    ),
    Case("zip-exact-path", b_zip_exact, ("ok", lambda r: r[0] == r[1] and r[2] == r[3]), old_ok=True),
    Case(
        "images-kind-zip-listed-once",
        b_images_zip,
        ("ok", lambda m: [im["id"] for im in m["images"]] == ["val2017/a.jpg", "val2017/b.jpg"]),
    ),
    # 7. ids exactly as written
    Case(
        "ids-1png-vs-001png",
        b_images_1_001,
        ("ok", lambda m: [im["id"] for im in m["images"]] == ["001.png", "1.png"] and not m["rejects"]),
    ),
    Case(
        "ids-a.jpg-vs-a.png",
        b_a_jpg_a_png,
        ("ok", lambda m: _caps(m) == [("a.jpg", "jpeg one"), ("a.png", "png one")] and not m["rejects"]),
    ),
    Case(
        "caption-ids-01-vs-1",
        b_caption_01_1,
        ("ok", lambda m: [c["id"] for c in m["captions"]] == ["01", "1"] and not m["rejects"]),
    ),
    Case(
        "caption-id-on-some-rows",
        b_caption_id_mixed,
        ("error", r"c\.csv:3: this row has no caption_id, but other rows have one"),
    ),
    Case(
        "image-id-superscript-two",
        b_superscript,
        ("ok", lambda m: [im["id"] for im in m["images"]] == ["\u00b2"] and _caps(m) == [("\u00b2", "squared")]),
    ),
    Case(
        "demo-dataset-still-works",
        b_demo,
        ("ok", lambda m: (m["counts"]["images"], m["counts"]["captions"], m["rejects"]) == (4, 8, [])),
        old_ok=True,
    ),
    Case(
        "coco-real-int-ids-kept",
        b_coco_real,
        (
            "ok",
            lambda m: (
                m["counts"]["images"] == 20
                and all(type(im["id"]) is int for im in m["images"])
                and all(type(c["id"]) is int and type(c["image_id"]) is int for c in m["captions"])
            ),
        ),
        old_ok=True,
    ),
    # 8. encodings
    Case("csv-not-utf8-row", b_csv_latin1, ("skip", r"c\.csv:3: not valid UTF-8 \(byte b'\\xe9'\)", c_row3_rejected)),
    Case(
        "jsonl-not-utf8-line",
        b_jsonl_latin1,
        ("skip", r"c\.jsonl:2: not valid UTF-8 \(byte offset 76: b'\\xe9'\)", c_jsonl_row2),
    ),
    Case(
        "coco-not-utf8", b_coco_latin1, ("error", r"captions\.json:\d+: not valid UTF-8 \(byte offset \d+: b'\\xe9'\)")
    ),
    Case("csv-utf8-bom", b_csv_bom, ("ok", lambda m: _caps(m) == [("a.jpg", "a cat")])),
    Case("jsonl-utf8-bom", b_jsonl_bom, ("ok", lambda m: _caps(m) == [("a.jpg", "a cat")])),
    Case("coco-utf8-bom", b_coco_bom, ("ok", lambda m: _caps(m) == [(1, "c")])),
    Case("csv-utf16", b_csv_utf16, ("error", r"c\.csv: file is UTF-16/UTF-32 encoded; save it as UTF-8")),
    Case("jsonl-u2028-in-caption", b_jsonl_u2028, ("ok", lambda m: _caps(m) == [("a.jpg", "line\u2028separator")])),
    # 9. captions that are not strings
    Case(
        "jsonl-caption-int",
        b_jsonl_caption(5),
        ("skip", r"c\.jsonl:1: caption '0': caption is not a string \(got int\)", c_not_string("int")),
    ),
    Case(
        "jsonl-caption-list",
        b_jsonl_caption(["a", "b"]),
        ("skip", r"c\.jsonl:1: caption '0': caption is not a string \(got list\)", c_not_string("list")),
    ),
    Case(
        "coco-caption-int",
        b_coco_caption_int,
        (
            "skip",
            r"captions\.json: annotations\[1\]: caption 3: caption is not a string \(got int\)",
            lambda m: _caps(m) == [(1, "fine")] and _rej(m) == {("caption", 3)},
        ),
    ),
    Case("empty-caption", b_empty_caption, ("error", r"caption '?1'?: empty caption"), old_ok=True),
    # 10. nothing left to embed
    Case(
        "all-items-rejected",
        b_all_missing,
        (
            "error",
            r"dataset 'd': nothing left to embed: 2 images and 2 captions in the source, 4 items rejected; "
            r"first: image 'a\.jpg': image file missing: a\.jpg",
        ),
        policy="skip",
    ),
    Case("header-only-table", b_header_only, ("error", r"dataset 'd': nothing left to embed: 0 images and 0 captions")),
    # 11. already clear
    Case("coco-malformed-json", b_coco_malformed, ("error", r"captions\.json: malformed JSON"), old_ok=True),
    Case(
        "coco-no-annotations",
        b_coco_no_annotations,
        ("error", r"captions\.json: missing or non-list key 'annotations'"),
        old_ok=True,
    ),
    Case("jsonl-malformed-line", b_jsonl_bad_line, ("error", r"c\.jsonl:2: malformed JSON line"), old_ok=True),
    Case(
        "csv-no-caption-column", b_no_caption_column, ("error", r"c\.csv(:1|: row 0): no 'caption' column"), old_ok=True
    ),
    Case("csv-no-image-column", b_no_image_column, ("error", r"c\.csv(:2|: row 0): no 'image'"), old_ok=True),
    Case("image-file-missing", b_missing_file, ("error", r"image file missing: b\.jpg"), old_ok=True),
    # 12. bad image bytes
    Case(
        "corrupt-image",
        lambda t, r: _decode(t, "junk.jpg", b"this is not a jpeg"),
        ("error", r"corrupt or truncated image: .*junk\.jpg"),
        exc=BadImageError,
        old_ok=True,
    ),
    Case(
        "zero-byte-image",
        lambda t, r: _decode(t, "zero.jpg", b""),
        ("error", r"(empty image file \(0 bytes\)|corrupt or truncated image): .*zero\.jpg"),
        exc=BadImageError,
        old_ok=True,
    ),
    Case(
        "truncated-jpeg",
        lambda t, r: _decode(t, "trunc.jpg", _jpeg_bytes()[:1500]),
        ("error", r"corrupt or truncated image: .*trunc\.jpg"),
        exc=BadImageError,
        old_ok=True,
    ),
    Case(
        "truncated-png",
        lambda t, r: _decode(t, "trunc.png", _png_bytes()[:6000]),
        ("error", r"corrupt or truncated image: .*trunc\.png"),
        exc=BadImageError,
        old_ok=True,
    ),
    Case(
        "decompression-bomb",
        lambda t, r: lambda policy: decode_image(_bomb_png(), str(t / "bomb.png")),
        ("error", r"bomb\.png.*exceeds limit of \d+ pixels"),
        exc=BadImageError,
        old_ok=True,
    ),
    Case(
        "bomb-warning-range-accepted",
        b_bomb_warning,
        ("ok", lambda r: r[0].size == (64, 64) and r[0].mode == "RGB" and r[1] == []),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case: Case, tmp_path, request):
    run = case.build(tmp_path, request)
    kind = case.expect[0]
    if kind == "error":
        with pytest.raises(case.exc, match=case.expect[1]):
            run(case.policy)
    elif kind == "skip":
        _, regex, check = case.expect
        with pytest.raises(case.exc, match=regex):
            run("error")
        m = run("skip")
        assert m["rejects"] and m["counts"]["rejected"] == len(m["rejects"])
        assert check(m), json.dumps({k: m[k] for k in ("images", "captions", "rejects")}, default=str, indent=1)
    else:
        result = run(case.policy)
        assert case.expect[1](result), repr(result)[:3000]


def test_table_size():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)
