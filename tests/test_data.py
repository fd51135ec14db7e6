"""Ingestion: real COCO captions, generic tables, and every kind of bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clipgeom.data import (
    DataError,
    build_manifest,
    list_image_folder,
    manifest_for,
    read_caption_table,
    read_coco_captions,
    shard_slice,
)
from clipgeom.imagesource import BadImageError, ImageSource, to_rgb


@pytest.fixture(scope="module")
def coco_json(shared_data) -> Path:
    return shared_data / "coco-val2017" / "captions_val2017.json"


@pytest.fixture(scope="module")
def coco_placeholder_images(coco_json, tmp_path_factory) -> Path:
    """A folder of tiny placeholder JPEGs named like the real val2017 files."""
    root = tmp_path_factory.mktemp("val2017")
    data = json.loads(coco_json.read_text())
    buf = root / "_one.jpg"
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buf, quality=90)
    blob = buf.read_bytes()
    buf.unlink()
    for im in data["images"]:
        (root / im["file_name"]).write_bytes(blob)
    return root


def test_real_coco_captions_all_kept(coco_json, coco_placeholder_images):
    raw = json.loads(coco_json.read_text())
    m = manifest_for(
        "coco",
        {
            "kind": "coco",
            "captions": str(coco_json),
            "images": str(coco_placeholder_images),
            "on_bad_item": "error",
            "captions_per_image": None,
        },
    )
    assert m["counts"]["images"] == 5000
    assert m["counts"]["captions"] == 25014
    per_image = Counter(c["image_id"] for c in m["captions"])
    assert sorted(Counter(per_image.values()).items()) == [(5, 4987), (6, 12), (7, 1)]
    # ids kept and pairing right: every caption is the annotation with that id, pointing at its image
    by_id = {a["id"]: a for a in raw["annotations"]}
    files = {im["id"]: im["file_name"] for im in raw["images"]}
    for c in m["captions"]:
        a = by_id[c["id"]]
        assert c["image_id"] == a["image_id"] and c["caption"] == a["caption"].strip()
    assert {im["id"]: im["file"] for im in m["images"]} == files
    # annotation order is kept (the "first caption" of an image is its first annotation)
    assert [c["id"] for c in m["captions"]] == [a["id"] for a in raw["annotations"]]
    assert m["source"]["captions_sha256"] == "b38a92486848a88da87130fb0af7ef790b504628e3817137e21b2d3bd9d9190c"


def test_coco_first_k_captions(coco_json, coco_placeholder_images):
    m = manifest_for(
        "coco",
        {
            "kind": "coco",
            "captions": str(coco_json),
            "images": str(coco_placeholder_images),
            "on_bad_item": "error",
            "captions_per_image": 1,
        },
    )
    assert m["counts"]["captions"] == 5000
    raw = json.loads(coco_json.read_text())
    first = {}
    for a in raw["annotations"]:
        first.setdefault(a["image_id"], a["id"])
    assert {c["image_id"]: c["id"] for c in m["captions"]} == first


def test_coco_read_from_zip(tmp_path):
    import zipfile

    Image.new("RGB", (9, 7), "red").save(tmp_path / "a.jpg")
    with zipfile.ZipFile(tmp_path / "val2017.zip", "w") as zf:
        zf.write(tmp_path / "a.jpg", "val2017/000000000139.jpg")
    src = ImageSource(tmp_path / "val2017.zip")
    assert src.has("000000000139.jpg") and not src.has("000000000285.jpg")
    assert src.open("000000000139.jpg").size == (9, 7)
    with pytest.raises(BadImageError, match="000000000285.jpg"):
        src.open("000000000285.jpg")


def _write_images(root: Path, names):
    root.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", (8, 8), "blue").save(root / n)


def test_generic_csv_and_jsonl(tmp_path):
    _write_images(tmp_path / "img", ["a.png", "b.png"])
    (tmp_path / "c.csv").write_text("image,caption\na.png,first\nb.png,second\na.png,third\n")
    (tmp_path / "c.jsonl").write_text(
        "".join(
            json.dumps(r) + "\n"
            for r in [
                {"image": "a.png", "caption": "first"},
                {"image": "b.png", "caption": "second"},
                {"image": "a.png", "caption": "third"},
            ]
        )
    )
    for name in ("c.csv", "c.jsonl"):
        m = manifest_for(
            "g",
            {
                "kind": "folder",
                "captions": str(tmp_path / name),
                "images": str(tmp_path / "img"),
                "on_bad_item": "error",
                "captions_per_image": None,
            },
        )
        # ids of a table are strings; the default image id is the file name (a.png and a.jpg differ)
        assert [im["id"] for im in m["images"]] == ["a.png", "b.png"]
        assert [(c["image_id"], c["caption"]) for c in m["captions"]] == [
            ("a.png", "first"),
            ("b.png", "second"),
            ("a.png", "third"),
        ]


def test_images_only_and_captions_only_sets(tmp_path):
    _write_images(tmp_path / "gen", ["x1.png", "x0.png"])
    (tmp_path / "gen" / "notes.txt").write_text("not an image")
    assert [im["file"] for im in list_image_folder(tmp_path / "gen")] == ["x0.png", "x1.png"]
    (tmp_path / "caps.txt").write_text("a generated caption\n\nanother one\n")
    m = manifest_for("c", {"kind": "captions", "captions": str(tmp_path / "caps.txt"), "on_bad_item": "error"})
    assert [c["caption"] for c in m["captions"]] == ["a generated caption", "another one"]
    assert m["images"] == []


# ------------------------------------------------------------------ bad input
IMAGES = [{"id": 1, "file": "1.png"}, {"id": 2, "file": "2.png"}]
CAPS = [{"id": 10, "image_id": 1, "caption": "one"}, {"id": 11, "image_id": 2, "caption": "two"}]


@pytest.fixture
def image_dir(tmp_path):
    _write_images(tmp_path / "img", ["1.png", "2.png"])
    return tmp_path / "img"


@pytest.mark.parametrize(
    "images, captions, delete, match, rejected",
    [
        (IMAGES, CAPS, "2.png", r"image 2.*image file missing: 2\.png", {("image", 2), ("caption", 11)}),
        (
            IMAGES,
            CAPS + [{"id": 12, "image_id": 99, "caption": "orphan"}],
            None,
            r"caption 12.*image id 99 is not in the dataset",
            {("caption", 12)},
        ),
        (IMAGES + [{"id": 3, "file": "1.png"}], CAPS, None, r"image 3.*no captions", {("image", 3)}),
        (IMAGES + [{"id": 1, "file": "2.png"}], CAPS, None, r"image 1.*duplicate image id", {("image", 1)}),
        (
            IMAGES,
            CAPS + [{"id": 10, "image_id": 2, "caption": "dup"}],
            None,
            r"caption 10.*duplicate caption id",
            {("caption", 10)},
        ),
        (
            IMAGES,
            CAPS + [{"id": 13, "image_id": 1, "caption": "   "}],
            None,
            r"caption 13.*empty caption",
            {("caption", 13)},
        ),
    ],
)
def test_bad_items_error_or_skip(image_dir, images, captions, delete, match, rejected):
    if delete:
        (image_dir / delete).unlink()
    with pytest.raises(DataError, match=match):
        build_manifest("bad", images, captions, image_root=image_dir, policy="error")
    m = build_manifest("bad", images, captions, image_root=image_dir, policy="skip")
    assert {(r["kind"], r["item"]) for r in m["rejects"]} == rejected
    assert m["counts"]["rejected"] == len(rejected)
    # nothing dropped silently: kept + rejected accounts for every caption
    kept_caps = {c["id"] for c in m["captions"]}
    rejected_caps = [r["item"] for r in m["rejects"] if r["kind"] == "caption"]
    assert len(kept_caps) + len(rejected_caps) == len(captions)


def test_malformed_annotations_json(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_text('{"images": [], "annotations": [')
    with pytest.raises(DataError, match=r"captions\.json: malformed JSON"):
        read_coco_captions(bad)
    bad.write_text('{"images": [{"id": 1}], "annotations": []}')
    with pytest.raises(DataError, match=r"images\[0\] lacks 'id' or 'file_name'"):
        read_coco_captions(bad)
    bad.write_text('{"images": []}')
    with pytest.raises(DataError, match="missing or non-list key 'annotations'"):
        read_coco_captions(bad)
    with pytest.raises(DataError, match="captions file not found"):
        read_coco_captions(tmp_path / "nope.json")


def test_caption_table_errors(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("image,text\na.png,hello\n")
    with pytest.raises(DataError, match=r"c\.csv:1: no 'caption' column"):
        read_caption_table(p)
    p2 = tmp_path / "c.jsonl"
    p2.write_text('{"image": "a.png", "caption": "x"}\n{broken\n')
    with pytest.raises(DataError, match=r"c\.jsonl:2: malformed JSON line"):
        read_caption_table(p2)


def test_image_modes_converted_not_rejected(tmp_path):
    gray = Image.new("L", (5, 5), 128)
    cmyk = Image.new("CMYK", (5, 5), (0, 255, 255, 0))
    rgba = Image.new("RGBA", (5, 5), (255, 0, 0, 0))  # fully transparent red
    assert to_rgb(gray).getpixel((0, 0)) == (128, 128, 128)
    r, g, b = to_rgb(cmyk).getpixel((0, 0))
    assert r > 200 and g < 50 and b < 50  # CMYK (0,255,255,0) is red
    assert to_rgb(rgba).getpixel((0, 0)) == (255, 255, 255)  # composited on white
    gray.save(tmp_path / "g.jpg")
    cmyk.save(tmp_path / "c.jpg")
    rgba.save(tmp_path / "a.png")
    src = ImageSource(tmp_path)
    for n in ("g.jpg", "c.jpg", "a.png"):
        assert src.open(n).mode == "RGB"


def test_truncated_and_corrupt_jpeg_named(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "ok.jpg")
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"this is not a jpeg")
    src = ImageSource(tmp_path)
    assert src.open("ok.jpg").size == (64, 64)
    with pytest.raises(BadImageError, match="trunc.jpg"):
        src.open("trunc.jpg")
    with pytest.raises(BadImageError, match="junk.jpg"):
        src.open("junk.jpg")


def test_shard_slices_partition():
    for n in (0, 1, 7, 25014):
        for k in (1, 3, 4, 8):
            parts = [shard_slice(n, i, k) for i in range(1, k + 1)]
            covered = [r for s in parts for r in range(s.start, s.stop)]
            assert covered == list(range(n))
