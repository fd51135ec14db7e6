"""Embedding shards with a real (tiny, seeded) open_clip model, merging, importing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from PIL import Image
from workflow_utils import REPO, SNAKEMAKE, demo_config, run_snakemake, snakemake_env

from clipgeom.data import build_manifest
from clipgeom.embed import MergeError, embed_shard, load_model, make_random_checkpoint, merge_shards
from clipgeom.h5io import EmbeddingsFileError, read_embeddings
from clipgeom.imagesource import BadImageError
from clipgeom.imported import import_embeddings

TINY = str(REPO / "config" / "models" / "tiny-clip.json")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("model") / "tiny.pt"
    make_random_checkpoint("tiny-clip", TINY, seed=0, out=ckpt)
    return {"arch": "tiny-clip", "pretrained": str(ckpt), "model_config": TINY, "precision": "fp32", "device": "cpu"}


@pytest.fixture(scope="module")
def coco_like(tmp_path_factory):
    """Placeholder images named like COCO files, with grayscale/CMYK/alpha members, and captions."""
    root = tmp_path_factory.mktemp("coco_like")
    rng = np.random.default_rng(1)
    images, caps = [], []
    for i, img_id in enumerate([139, 285, 632, 724, 776, 785, 802, 872, 885, 1000]):
        name = f"{img_id:012d}.jpg"
        arr = rng.integers(0, 255, (40 + i, 48, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        if i == 1:
            img = img.convert("L")
        if i == 2:
            img = img.convert("CMYK")
        if i == 3:
            name = f"{img_id:012d}.png"
            img = img.convert("RGBA")
        img.save(root / name)
        images.append({"id": img_id, "file": name})
        for k in range(2):
            caps.append({"id": 1000 * i + k, "image_id": img_id, "caption": f"a photo number {i} variant {k}"})
    return root, images, caps


def _manifest(root, images, caps, policy="error"):
    return build_manifest("coco_like", images, caps, image_root=root, policy=policy)


def test_model_path_raw_embeddings(tiny_model, coco_like, tmp_path):
    root, images, caps = coco_like
    m = _manifest(root, images, caps)
    attrs = embed_shard(m, root, tiny_model, "tiny", 1, 1, tmp_path / "s.h5", batch_size=3, workers=1)
    assert attrs["embed_dim"] == 64 and attrs["device"] == "cpu"
    emb = merge_shards(m, [tmp_path / "s.h5"], tmp_path / "embeddings.h5")
    assert emb.image.shape == (10, 64) and emb.text.shape == (20, 64)
    # raw, not normalised, and equal to a direct forward pass of the same model
    model, preprocess, tokenizer, info = load_model(
        **{k: tiny_model[k] for k in ("arch", "pretrained", "model_config", "precision", "device")}
    )
    import torch

    from clipgeom.imagesource import ImageSource

    src = ImageSource(root)
    with torch.no_grad():
        x = torch.stack([preprocess(src.open(im["file"])) for im in images])
        direct_img = model.encode_image(x).numpy()
        direct_txt = model.encode_text(tokenizer([c["caption"] for c in caps])).numpy()
    np.testing.assert_allclose(emb.image, direct_img, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(emb.text, direct_txt, rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.linalg.norm(emb.image, axis=1), 1.0)
    on_disk = read_embeddings(tmp_path / "embeddings.h5")
    assert on_disk.attrs["normalized"] is False or on_disk.attrs["normalized"] == 0
    for key in (
        "model",
        "pretrained",
        "logit_scale",
        "embed_dim",
        "open_clip_version",
        "torch_version",
        "precision",
        "device",
        "dataset",
        "input_checksum",
        "checkpoint_sha256",
    ):
        assert key in on_disk.attrs, key
    assert list(on_disk.image_id) == [im["id"] for im in images]
    assert list(on_disk.text_image_index) == [i // 2 for i in range(20)]
    assert on_disk.image_file[0] == "000000000139.jpg"


def test_shards_concatenate_to_single_run(tiny_model, coco_like, tmp_path):
    root, images, caps = coco_like
    m = _manifest(root, images, caps)
    embed_shard(m, root, tiny_model, "tiny", 1, 1, tmp_path / "one.h5", workers=0)
    one = merge_shards(m, [tmp_path / "one.h5"], tmp_path / "e1.h5")
    paths = []
    for k in (1, 2, 3):
        paths.append(tmp_path / f"{k}-of-3.h5")
        embed_shard(m, root, tiny_model, "tiny", k, 3, paths[-1], workers=0)
    three = merge_shards(m, paths, tmp_path / "e3.h5")
    np.testing.assert_allclose(three.image, one.image, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(three.text, one.text, rtol=1e-5, atol=1e-6)
    # a missing shard fails loudly; so do shards out of order and a count mismatch
    with pytest.raises(MergeError, match="missing shard"):
        merge_shards(m, [paths[0], tmp_path / "nope.h5", paths[2]], tmp_path / "x.h5")
    with pytest.raises(MergeError, match="a shard is missing or out of order"):
        merge_shards(m, [paths[0], paths[2], paths[1]], tmp_path / "x.h5")
    with pytest.raises(MergeError, match="one of 3 shards"):
        merge_shards(m, paths[:2], tmp_path / "x.h5")
    # shards whose provenance differs are refused, naming the key and the shard
    with h5py.File(paths[1], "a") as f:
        f.attrs["precision"] = "bf16"
    with pytest.raises(MergeError, match=r"precision=.*2-of-3\.h5"):
        merge_shards(m, paths, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


def test_corrupt_jpeg_error_and_skip(tiny_model, coco_like, tmp_path):
    root, images, caps = coco_like
    bad_root = tmp_path / "imgs"
    bad_root.mkdir()
    for im in images:
        (bad_root / im["file"]).write_bytes((root / im["file"]).read_bytes())
    data = (bad_root / images[4]["file"]).read_bytes()
    (bad_root / images[4]["file"]).write_bytes(data[: len(data) // 3])
    m = _manifest(bad_root, images, caps)
    with pytest.raises(BadImageError, match=images[4]["file"]):
        embed_shard(m, bad_root, tiny_model, "tiny", 1, 1, tmp_path / "s.h5", workers=0)
    assert not (tmp_path / "s.h5").exists()
    m = _manifest(bad_root, images, caps, policy="skip")
    embed_shard(m, bad_root, tiny_model, "tiny", 1, 1, tmp_path / "s.h5", workers=0)
    emb = merge_shards(m, [tmp_path / "s.h5"], tmp_path / "e.h5")
    assert len(emb.image) == 9 and images[4]["id"] not in set(emb.image_id)
    assert len(emb.text) == 18  # its two captions are dropped, and listed
    rejects = json.loads(emb.attrs["rejects"])
    assert {(r["kind"], r["item"]) for r in rejects} == {
        ("image", images[4]["id"]),
        ("caption", 4000),
        ("caption", 4001),
    }
    # pairing still right after re-indexing
    for j, i in enumerate(emb.text_image_index):
        img_id = emb.image_id[i]
        assert caps[[c["id"] for c in caps].index(emb.text_id[j])]["image_id"] == img_id


# ------------------------------------------------------------------ import
def test_import_real_clip_pairs(shared_data, tmp_path):
    src = shared_data / "clip-vitb16-coco500" / "features_clip.npy"
    arr = np.load(src)
    emb = import_embeddings(src, dataset="coco500", model="imported", logit_scale=100.0)
    assert emb.image.shape == (500, 512) and emb.text.shape == (500, 512)
    np.testing.assert_array_equal(emb.text_image_index, np.arange(500))
    np.testing.assert_array_equal(emb.image, arr[0])
    np.testing.assert_array_equal(np.linalg.norm(emb.text, axis=1), np.linalg.norm(arr[1], axis=1))
    assert emb.attrs["normalized"] is True  # these rows are unit norm: the file says so
    # pairing: matched pairs are far more similar than random ones (recall@1 0.552 per the data README)
    sims = emb.image @ emb.text.T
    assert (sims.argmax(1) == np.arange(500)).mean() == pytest.approx(0.552, abs=1e-3)


def test_import_npz_and_bad_arrays(tmp_path):
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(4, 8)), rng.normal(size=(6, 8))
    np.savez(tmp_path / "ok.npz", image=img, text=txt, text_image_index=[0, 0, 1, 2, 3, 3])
    emb = import_embeddings(tmp_path / "ok.npz", dataset="d", model="m", logit_scale=50.0)
    assert emb.attrs["logit_scale"] == 50.0 and list(emb.text_image_index) == [0, 0, 1, 2, 3, 3]
    assert emb.attrs["normalized"] is False
    bad = img.copy()
    bad[2, 3] = np.nan
    np.savez(tmp_path / "nan.npz", image=bad, text=txt[:4])
    with pytest.raises(EmbeddingsFileError, match=r"nan\.npz: image has 1 NaN/inf value\(s\); first in row 2"):
        import_embeddings(tmp_path / "nan.npz", dataset="d", model="m", logit_scale=100)
    inf = txt[:4].copy()
    inf[1, 0] = np.inf
    np.savez(tmp_path / "inf.npz", image=img, text=inf)
    with pytest.raises(EmbeddingsFileError, match="text has 1 NaN/inf"):
        import_embeddings(tmp_path / "inf.npz", dataset="d", model="m", logit_scale=100)
    np.savez(tmp_path / "w.npz", image=img, text=rng.normal(size=(4, 9)))
    with pytest.raises(EmbeddingsFileError, match="width 8 but text embeddings have width 9"):
        import_embeddings(tmp_path / "w.npz", dataset="d", model="m", logit_scale=100)
    np.savez(tmp_path / "unpaired.npz", image=img, text=txt)
    with pytest.raises(EmbeddingsFileError, match="no 'text_image_index'"):
        import_embeddings(tmp_path / "unpaired.npz", dataset="d", model="m", logit_scale=100)
    np.save(tmp_path / "bad.npy", rng.normal(size=(3, 4, 8)))
    with pytest.raises(EmbeddingsFileError, match=r"expected shape \(2, N, d\)"):
        import_embeddings(tmp_path / "bad.npy", dataset="d", model="m", logit_scale=100)


# ------------------------------------------------------------------ workflow: kill and rerun
def _embeddings_arrays(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in ("image/embedding", "text/embedding", "image/id", "text/image_index")}


@pytest.mark.slow
def test_sigkill_inside_embed_shard_then_rerun_is_bit_identical(tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    for d in (ref, killed):
        d.mkdir()
    target = "results/demo/tiny-a/embeddings.h5"
    cfg = dict(n_images=600, embedding={"shards": 2, "batch_size": 16, "text_batch_size": 32, "loader_workers": 1})
    run_snakemake(ref, demo_config(ref, **cfg), "--cores", "2", target)

    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(killed),
        "--configfile",
        str(demo_config(killed, **cfg)),
        "--cores",
        "1",
        target,
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=killed,
        env=snakemake_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    log = killed / "results/demo/tiny-a/logs/embed_shard_1-of-2.log"
    deadline = time.time() + 300
    while time.time() < deadline:
        if log.exists() and "embed images" in log.read_text():
            break
        time.sleep(0.05)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("embed_shard never started")
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job tree, mid-shard
    proc.wait()
    shard = killed / "results/demo/tiny-a/shards/1-of-2.h5"
    assert not shard.exists(), "a killed shard must not leave a complete-looking file"
    # what a user does after a kill: release the lock, rerun the incomplete jobs
    run_snakemake(killed, killed / "demo.yaml", "--unlock")
    out = run_snakemake(killed, killed / "demo.yaml", "--cores", "2", "--rerun-incomplete", target)
    assert "embed_shard" in out.stdout + out.stderr
    a, b = _embeddings_arrays(ref / target), _embeddings_arrays(killed / target)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
