"""Fault injection on arrays, embeddings files, shards, checkpoints and temporary files.

One table, CASES: each row is (id, builder, expected).  ``builder(tmp_path, env)`` writes the bad
input under tmp_path and returns a zero-argument callable that does what the workflow does with it
(import + write + read back, merge shards, load a model, read a file...).  ``expected`` is
- ``("error", regex, exception class name[, post(tmp_path, exc)])``: the call raises that class and
  the message matches ``regex``, which names the culprit file / key / row;
- ``("skip", predicate(result, tmp_path))``: bad rows were dropped; the predicate checks the kept
  rows and the rejects;
- ``("ok", predicate(result, tmp_path))``: accepted; the predicate checks what came out.

Tests that need a model share one tiny seeded open_clip checkpoint (``env``, module-scoped).
Names are looked up at call time, so each row fails on its own against older code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import embeddings_from_pairs
from PIL import Image
from workflow_utils import REPO

import clipgeom.embed as E
import clipgeom.h5io as H
import clipgeom.imported as I
from clipgeom.data import build_manifest

TINY = str(REPO / "config" / "models" / "tiny-clip.json")
RNG = np.random.default_rng(0)


# ----------------------------------------------------------------------------- shared, built once
class Env:
    """Lazily built shared inputs: a tiny seeded checkpoint, images, a manifest and its 2 shards."""

    def __init__(self, root: Path):
        self.root = root

    @cached_property
    def ckpt(self) -> Path:
        return E.make_random_checkpoint("tiny-clip", TINY, seed=0, out=self.root / "tiny.pt")

    def model_cfg(self, ckpt=None) -> dict:
        return {
            "arch": "tiny-clip",
            "pretrained": str(ckpt or self.ckpt),
            "model_config": TINY,
            "precision": "fp32",
            "device": "cpu",
        }

    @cached_property
    def images(self):
        root = self.root / "images"
        root.mkdir()
        rng = np.random.default_rng(1)
        images, caps = [], []
        for i in range(6):
            name = f"{i:012d}.jpg"
            Image.fromarray(rng.integers(0, 255, (36, 40, 3), dtype=np.uint8)).save(root / name)
            images.append({"id": i, "file": name})
            for k in range(2):
                text = "a zebra in the photo" if (i, k) == (0, 1) else f"a photo number {i} variant {k}"
                caps.append({"id": 1000 * i + k, "image_id": i, "caption": text})
        return root, images, caps

    def manifest(self, policy="error"):
        root, images, caps = self.images
        return build_manifest("faults", images, caps, image_root=root, policy=policy)

    @cached_property
    def shards(self) -> list[Path]:
        root, _, _ = self.images
        m = self.manifest()
        out = []
        for k in (1, 2):
            out.append(self.root / "shards" / f"{k}-of-2.h5")
            E.embed_shard(m, root, self.model_cfg(), "tiny", k, 2, out[-1], workers=0)
        return out

    def copy_shards(self, tmp_path: Path) -> list[Path]:
        d = tmp_path / "results" / "shards"
        d.mkdir(parents=True)
        return [Path(shutil.copy(p, d / p.name)) for p in self.shards]

    @cached_property
    def nan_token_ckpt(self) -> Path:
        """The tiny checkpoint with the token embedding of 'zebra' set to NaN: that caption embeds to NaN."""
        import open_clip
        import torch

        sd = torch.load(self.ckpt, weights_only=True)
        tok = open_clip.get_tokenizer("tiny-clip")("zebra")[0]
        sd["token_embedding.weight"][int(tok[1])] = float("nan")
        out = self.root / "nan-token.pt"
        torch.save(sd, out)
        return out


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Env(tmp_path_factory.mktemp("faults_env"))


# ----------------------------------------------------------------------------- helpers
def raw_h5(path: Path, image, text, *, image_id=None, text_id=None, tii=None, attrs=None) -> Path:
    """An embeddings file in the project schema written directly with h5py (no validation): 'someone else's'."""
    image, text = np.asarray(image, np.float32), np.asarray(text, np.float32)
    s = h5py.string_dtype()
    with h5py.File(path, "w") as f:
        f["image/embedding"] = image
        f.create_dataset(
            "image/id",
            data=np.asarray(image_id if image_id is not None else [f"i{k}" for k in range(len(image))], dtype=object),
            dtype=s,
        )
        f.create_dataset("image/file", data=np.asarray([""] * len(image), dtype=object), dtype=s)
        f["text/embedding"] = text
        f.create_dataset(
            "text/id",
            data=np.asarray(text_id if text_id is not None else [f"t{k}" for k in range(len(text))], dtype=object),
            dtype=s,
        )
        f["text/image_index"] = np.asarray(tii if tii is not None else np.arange(len(text)), np.int64)
        f.create_dataset("text/caption", data=np.asarray([""] * len(text), dtype=object), dtype=s)
        for k, v in (attrs or {"model": "x"}).items():
            f.attrs[k] = v
    return path


def do_import(src: Path, tmp_path: Path, policy=None):
    """What the import_embeddings rule does: import, write embeddings.h5, (a stage) read it back."""
    kw = {} if policy is None else {"policy": policy}
    emb = I.import_embeddings(src, dataset="d", model="m", logit_scale=100.0, **kw)
    out = tmp_path / "results" / "embeddings.h5"
    H.write_embeddings(out, emb)
    return H.read_embeddings(out)


def importing(make, policy=None):
    def build(tmp_path, env):
        src = make(tmp_path)
        return lambda: do_import(src, tmp_path, policy)

    return build


def npz(name, **arrays):
    def make(tmp_path):
        p = tmp_path / name
        np.savez(p, **arrays)
        return p

    return make


def pairs(n=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, d))


def with_row(arr, row, value):
    arr = np.array(arr, dtype=np.float64 if np.asarray(arr).dtype.kind != "c" else arr.dtype)
    arr[row] = value
    return arr


def rejects_of(emb) -> list[dict]:
    return json.loads(emb.attrs["rejects"])


def valid_h5(tmp_path, n=200) -> Path:
    img, txt = pairs(n, 16)
    p = tmp_path / "results" / "embeddings.h5"
    H.write_embeddings(p, embeddings_from_pairs(img, txt))
    return p


def truncated_h5(tmp_path) -> Path:
    p = valid_h5(tmp_path)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    return p


def garbage(name, n=4096):
    def make(tmp_path):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(np.random.default_rng(5).bytes(n))
        return p

    return make


def reading(make_file, fn):
    def build(tmp_path, env):
        p = make_file(tmp_path)
        return lambda: fn(p)

    return build


def corrupt_post(name):
    def post(tmp_path, exc):
        assert exc.corrupt is True, "EmbeddingsFileError.corrupt must be True for an unreadable file"
        assert Path(exc.path).name == name

    return post


def _chunks(p, mod="image", rows=2):
    return [x.shape for x in H.iter_embedding_chunks(p, mod, rows)]


def merging(prepare, out="embeddings.h5"):
    """prepare(tmp_path, env) -> (manifest, shard paths); the call merges them into tmp/results/out."""

    def build(tmp_path, env):
        m, shards = prepare(tmp_path, env)
        return lambda: E.merge_shards(m, shards, tmp_path / "results" / out)

    return build


def resign(shard: Path) -> None:
    """Recompute a shard's content checksum after editing it (what a model that emitted these values would write).

    (Code without shard checksums has nothing to re-sign.)"""
    if not hasattr(E, "shard_checksum"):
        return
    with h5py.File(shard, "a") as f:
        f.attrs["content_sha256"] = E.shard_checksum(
            f["image/embedding"][()],
            f["image/row"][()],
            [x.decode() for x in f["image/sha256"][()]],
            f["text/embedding"][()],
            f["text/row"][()],
        )


def shard_gone(name):
    def post(tmp_path, exc):
        p = tmp_path / "results" / "shards" / name
        assert not p.exists(), f"{p} should have been removed so the next run re-embeds it"
        assert exc.removed is True and Path(exc.shard).name == name
        assert not (tmp_path / "results" / "embeddings.h5").exists()

    return post


def loading(make_ckpt, **kw):
    def build(tmp_path, env):
        ck = make_ckpt(tmp_path, env)
        args = dict(env.model_cfg(), pretrained=None if ck is None else str(ck) if ck != "" else "")
        args.update(kw)
        return lambda: E.load_model(**args)

    return build


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _marker_absent(tmp_path, exc):
    assert not (tmp_path / "PWNED").exists(), "the pickle's payload ran"


# ----------------------------------------------------------------------------- builders: imports
def _h5_zero_text(tmp_path):
    img, txt = pairs(3)
    txt[1] = 0
    return raw_h5(
        tmp_path / "other.h5",
        img,
        txt,
        attrs={
            "model": "x",
            "rejects": json.dumps([{"kind": "image", "item": "i9", "reason": "upstream", "stage": "prepare_dataset"}]),
        },
    )


def _h5_dup(tmp_path):
    img, txt = pairs(3)
    return raw_h5(tmp_path / "dup.h5", img, txt, image_id=["a", "b", "a"])


def _object_npy(tmp_path):
    arr = np.empty((2, 3, 4), dtype=object)
    arr[...] = 1.0
    p = tmp_path / "obj.npy"
    np.save(p, arr, allow_pickle=True)
    return p


def _skip_pred(emb, tmp_path):
    rej = rejects_of(emb)
    assert emb.image.shape == (4, 8) and emb.text.shape == (3, 8)
    assert list(emb.image_id) == [0, 1, 3, 4] and list(emb.text_id) == [0, 1, 3]
    assert list(emb.text_image_index) == [0, 1, 2]  # caption 3 still points at image 3 (now row 2)
    got = {(r["kind"], r["item"], r["stage"]) for r in rej}
    assert got == {
        ("image", 2, "import_embeddings"),
        ("caption", 2, "import_embeddings"),
        ("caption", 4, "import_embeddings"),
    }, got
    reasons = {(r["kind"], r["item"]): r["reason"] for r in rej}
    assert "zero-norm" in reasons[("image", 2)] and "its image 2" in reasons[("caption", 2)]
    assert "non-finite" in reasons[("caption", 4)]
    assert emb.attrs["n_rejected"] == 3
    return True


def _skip_make(tmp_path):
    img, txt = pairs(5)
    img[2] = 0
    txt[4, 3] = np.nan
    p = tmp_path / "mixed.npz"
    np.savez(p, image=img, text=txt)
    return p


def _h5_skip_pred(emb, tmp_path):
    assert list(emb.text_id) == ["t0", "t2"] and len(emb.image) == 3
    assert list(emb.text_image_index) == [0, 2]
    rej = rejects_of(emb)
    assert {(r["kind"], r["item"], r["stage"]) for r in rej} == {
        ("image", "i9", "prepare_dataset"),
        ("caption", "t1", "import_embeddings"),
    }
    assert emb.attrs["n_rejected"] == 2
    return True


# ----------------------------------------------------------------------------- builders: merge
def _edited(tmp_path, env):
    shards = env.copy_shards(tmp_path)
    with h5py.File(shards[0], "a") as f:
        f["image/embedding"][0, 0] += 0.5
    return env.manifest(), shards


def _truncated_shard(tmp_path, env):
    shards = env.copy_shards(tmp_path)
    data = shards[1].read_bytes()
    shards[1].write_bytes(data[: len(data) // 3])
    return env.manifest(), shards


def _other_model(tmp_path, env):
    shards = env.copy_shards(tmp_path)
    ck = E.make_random_checkpoint("tiny-clip", TINY, seed=1, out=tmp_path / "other.pt")
    root, _, _ = env.images
    E.embed_shard(env.manifest(), root, env.model_cfg(ck), "tiny", 2, 2, shards[1], workers=0)
    return env.manifest(), shards


def _missing_shard(tmp_path, env):
    shards = env.copy_shards(tmp_path)
    shards[1].unlink()
    return env.manifest(), shards


def _other_manifest(tmp_path, env):
    root, images, caps = env.images
    caps = [dict(c, caption=c["caption"] + " (edited)") if c["id"] == 3001 else c for c in caps]
    return build_manifest("faults", images, caps, image_root=root, policy="error"), env.copy_shards(tmp_path)


def _nan_caption(policy):
    def prepare(tmp_path, env):
        root, _, _ = env.images
        m = env.manifest(policy)
        p = tmp_path / "results" / "shards" / "1-of-1.h5"
        E.embed_shard(m, root, env.model_cfg(env.nan_token_ckpt), "tiny", 1, 1, p, workers=0)
        return m, [p]

    return prepare


def _nan_skip_pred(emb, tmp_path):
    rej = rejects_of(emb)
    assert [(r["kind"], r["item"], r["stage"]) for r in rej] == [("caption", 1, "merge_embeddings")]
    assert "non-finite" in rej[0]["reason"] and emb.attrs["n_rejected"] == 1
    assert len(emb.image) == 6 and len(emb.text) == 11 and 1 not in set(emb.text_id)
    assert np.isfinite(emb.text).all()
    assert H.read_embeddings(tmp_path / "results" / "embeddings.h5").text.shape == (11, 64)
    return True


def _rejects_everywhere(tmp_path, env):
    """prepare_dataset rejects a missing file, embed_shard a corrupt JPEG, merge a zero-norm row."""
    src, images, caps = env.images
    root = tmp_path / "imgs"
    shutil.copytree(src, root)
    data = (root / images[3]["file"]).read_bytes()
    (root / images[3]["file"]).write_bytes(data[: len(data) // 3])
    images = images + [{"id": 77, "file": "gone.jpg"}]
    caps = caps + [{"id": 77000, "image_id": 77, "caption": "a missing image"}]
    m = build_manifest("faults", images, caps, image_root=root, policy="skip")
    p = tmp_path / "results" / "shards" / "1-of-1.h5"
    E.embed_shard(m, root, env.model_cfg(), "tiny", 1, 1, p, workers=0)
    with h5py.File(p, "a") as f:
        rows = list(f["image/row"][()])
        f["image/embedding"][rows.index(5)] = 0.0  # image id 5 comes out zero-norm
    resign(p)
    return m, [p]


def _rejects_pred(emb, tmp_path):
    rej = rejects_of(emb)
    got = {(r["stage"], r["kind"], r["item"]) for r in rej}
    want = {
        ("prepare_dataset", "image", 77),
        ("prepare_dataset", "caption", 77000),
        ("embed_shard", "image", 3),
        ("merge_embeddings", "caption", 3000),
        ("merge_embeddings", "caption", 3001),
        ("merge_embeddings", "image", 5),
        ("merge_embeddings", "caption", 5000),
        ("merge_embeddings", "caption", 5001),
    }
    assert got == want, got ^ want
    assert emb.attrs["n_rejected"] == len(rej) == 8
    assert all(set(r) >= {"kind", "item", "reason", "stage"} for r in rej)
    assert list(emb.image_id) == [0, 1, 2, 4] and len(emb.text) == 8
    on_disk = H.read_attrs(tmp_path / "results" / "embeddings.h5")
    assert json.loads(on_disk["rejects"]) == rej and on_disk["n_rejected"] == 8
    return True


def _all_zero(tmp_path, env):
    m = env.manifest("skip")
    shards = env.copy_shards(tmp_path)
    for p in shards:
        with h5py.File(p, "a") as f:
            f["image/embedding"][...] = 0.0
        resign(p)
    # the copied shards were embedded from the 'error' manifest: same content, same checksum
    return m, shards


def _no_output(tmp_path, exc):
    assert not (tmp_path / "results" / "embeddings.h5").exists()
    assert not list((tmp_path / "results").glob(".embeddings.h5.tmp-*"))


# ----------------------------------------------------------------------------- builders: checkpoints
def _ck_bytes(data: bytes, name="w.pt"):
    def make(tmp_path, env):
        p = tmp_path / name
        p.write_bytes(data)
        return p

    return make


def _ck_torch(obj_fn, name="w.pt"):
    def make(tmp_path, env):
        import torch

        p = tmp_path / name
        torch.save(obj_fn(tmp_path), p)
        return p

    return make


def _ck_pickle(obj_fn, name="w.pt"):
    def make(tmp_path, env):
        p = tmp_path / name
        with open(p, "wb") as fh:
            pickle.dump(obj_fn(tmp_path), fh, protocol=2)
        return p

    return make


def _ck_other_arch(tmp_path, env):
    cfg = json.loads(Path(TINY).read_text())
    cfg["embed_dim"] = 32
    cfg["vision_cfg"]["width"] = 96
    other = tmp_path / "tiny-wide.json"
    other.write_text(json.dumps(cfg))
    return E.make_random_checkpoint("tiny-wide", str(other), seed=0, out=tmp_path / "wide.pt")


def _cuda_build(tmp_path, env):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the no-CUDA error cannot be provoked")
    return lambda: E.load_model(**dict(env.model_cfg(), device="cuda"))


# ----------------------------------------------------------------------------- builders: atomic writers
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _stale_tmp(tmp_path, env):
    from clipgeom import outputs

    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = _dead_pid()
    d = tmp_path / "results"
    d.mkdir()
    img, txt = pairs(3)
    writers = {
        "embeddings.h5": lambda p: H.write_embeddings(p, embeddings_from_pairs(img, txt)),
        "metrics.json": lambda p: outputs.write_json(p, {"a": 1}),
        "values.csv": lambda p: outputs.write_csv(p, {"a": [1, 2]}),
        "tiny.pt": lambda p: E.make_random_checkpoint("tiny-clip", TINY, 0, p),
    }
    for name in writers:
        (d / f".{name}.tmp-{dead}").write_bytes(b"partial")
        (d / f".{name}.tmp-{live.pid}").write_bytes(b"in progress")

    def run():
        try:
            for name, w in writers.items():
                w(d / name)
            return sorted(p.name for p in d.iterdir()), dead, live.pid
        finally:
            live.kill()
            live.wait()

    return run


def _stale_pred(res, tmp_path):
    names, dead, live = res
    for final in ("embeddings.h5", "metrics.json", "values.csv", "tiny.pt"):
        assert final in names
        assert f".{final}.tmp-{dead}" not in names, f"stale temporary file of {final} left behind"
        assert f".{final}.tmp-{live}" in names, f"another live writer's temporary file of {final} was removed"
    return True


def _failed_write(tmp_path, env):
    img, txt = pairs(3)
    emb = embeddings_from_pairs(img, txt, unstorable=object())

    def run():
        try:
            H.write_embeddings(tmp_path / "results" / "embeddings.h5", emb)
        except Exception as e:  # noqa: BLE001 - the point is what is left on disk
            return type(e).__name__, sorted(p.name for p in (tmp_path / "results").iterdir())
        return None, []

    return run


# ----------------------------------------------------------------------------- the table
@dataclass
class Case:
    id: str
    build: object
    expect: tuple
    note: str = ""


img4, txt4 = pairs(4)
img3, txt3 = pairs(3)
EFE, ME, MLE = "EmbeddingsFileError", "MergeError", "ModelLoadError"

CASES = [
    # ---- imported arrays
    Case(
        "import-tii-float-nonint",
        importing(npz("tii.npz", image=img3, text=txt3, text_image_index=[0, 0.999, 1.998])),
        ("error", r"tii\.npz: 'text_image_index' holds non-integer values .*first in row 1: .*0\.999", EFE),
    ),
    Case(
        "import-tii-float-integral",
        importing(npz("tii1.npz", image=img3, text=txt3, text_image_index=[0.0, 1.0, 2.0])),
        ("ok", lambda e, t: list(e.text_image_index) == [0, 1, 2]),
        "already behaved well",
    ),
    Case(
        "import-tii-out-of-range",
        importing(npz("oor.npz", image=img3[:2], text=txt3[:2], text_image_index=[0, 5])),
        ("error", r"oor\.npz: 'text_image_index' out of range \[-1, 1\].*row 1: 5", EFE),
    ),
    Case(
        "import-complex",
        importing(npz("cplx.npz", image=img3 + 1j * img3, text=txt3)),
        ("error", r"cplx\.npz: image has dtype complex128 \(complex", EFE),
    ),
    Case(
        "import-object-npz",
        importing(npz("obj.npz", image=img3, text=np.array(list(txt3) + [None], dtype=object)[:3])),
        ("error", r"obj\.npz: array 'text' has dtype object", EFE),
    ),
    Case("import-object-npy", importing(_object_npy), ("error", r"obj\.npy: .*dtype object", EFE)),
    Case(
        "import-bool",
        importing(npz("bool.npz", image=img3, text=txt3 > 0)),
        ("error", r"bool\.npz: text has dtype bool", EFE),
    ),
    Case(
        "import-numeric-strings",
        importing(npz("str.npz", image=img3.astype(str), text=txt3)),
        ("error", r"str\.npz: image has dtype <U\d+ \(string\)", EFE),
    ),
    Case(
        "import-int-dtype",
        importing(npz("int.npz", image=(img3 * 10).astype(np.int32) + 1, text=(txt3 * 10).astype(np.int64) + 1)),
        ("ok", lambda e, t: e.image.dtype == np.float32 and np.array_equal(e.image, (img3 * 10).astype(np.int32) + 1)),
        "integers accepted, cast to float32",
    ),
    Case(
        "import-float64-overflow",
        importing(npz("big.npz", image=with_row(img3, (1, 0), 1e300), text=txt3)),
        ("error", r"big\.npz: image has 1 NaN/inf value\(s\); first in row 1", EFE),
    ),
    Case(
        "import-nan-row",
        importing(npz("nan.npz", image=with_row(img4, (2, 3), np.nan), text=txt4)),
        ("error", r"nan\.npz: image has 1 NaN/inf value\(s\); first in row 2", EFE),
        "already behaved well",
    ),
    Case(
        "import-zero-norm-error",
        importing(npz("zero.npz", image=with_row(img4, 2, 0.0), text=txt4)),
        ("error", r"zero\.npz: image embeddings have 1 zero-norm .*ids \[2\]", EFE),
    ),
    Case("import-zero-norm-nan-skip", importing(_skip_make, policy="skip"), ("skip", _skip_pred)),
    Case(
        "import-all-rejected",
        importing(npz("allz.npz", image=np.zeros((3, 8)), text=txt3), policy="skip"),
        ("error", r"allz\.npz: every image was rejected \(3 of 3", EFE, _no_output),
    ),
    Case("import-h5-zero-norm-skip", importing(_h5_zero_text, policy="skip"), ("skip", _h5_skip_pred)),
    Case(
        "import-width-mismatch",
        importing(npz("w.npz", image=img4, text=np.ones((4, 9)))),
        ("error", r"w\.npz: image embeddings have width 8 but text embeddings have width 9", EFE),
        "already behaved well",
    ),
    Case(
        "import-npy-wrong-shape",
        importing(lambda t: (np.save(t / "bad.npy", np.ones((3, 4, 8))), t / "bad.npy")[1]),
        ("error", r"bad\.npy: expected shape \(2, N, d\), got \(3, 4, 8\)", EFE),
        "already behaved well",
    ),
    Case(
        "import-unknown-suffix",
        importing(lambda t: (np.savetxt(t / "e.csv", img3), t / "e.csv")[1]),
        ("error", r"e\.csv: unknown embeddings format", EFE),
        "already behaved well",
    ),
    Case(
        "import-npz-missing-key",
        importing(npz("nokey.npz", image=img3, txt=txt3)),
        ("error", r"nokey\.npz: missing array 'text' \(has \['image', 'txt'\]\)", EFE),
        "already behaved well",
    ),
    Case("import-h5-duplicate-ids", importing(_h5_dup), ("error", r"dup\.h5: duplicate /image/id \['a'\]", EFE)),
    Case("import-npz-garbage", importing(garbage("junk.npz")), ("error", r"junk\.npz: not a readable \.npz", EFE)),
    # ---- embeddings.h5 read by a stage
    Case(
        "read-truncated-read_embeddings",
        reading(truncated_h5, H.read_embeddings),
        ("error", r"embeddings\.h5: not a readable HDF5", EFE, corrupt_post("embeddings.h5")),
    ),
    Case(
        "read-truncated-read_attrs",
        reading(truncated_h5, H.read_attrs),
        ("error", r"embeddings\.h5: not a readable HDF5", EFE, corrupt_post("embeddings.h5")),
    ),
    Case(
        "read-truncated-count_rows",
        reading(truncated_h5, lambda p: H.count_rows(p, "text")),
        ("error", r"embeddings\.h5: not a readable HDF5", EFE, corrupt_post("embeddings.h5")),
    ),
    Case(
        "read-truncated-iter_chunks",
        reading(truncated_h5, lambda p: _chunks(p, "text", 50)),
        ("error", r"embeddings\.h5: not a readable HDF5", EFE, corrupt_post("embeddings.h5")),
    ),
    Case(
        "read-garbage-read_embeddings",
        reading(garbage("results/embeddings.h5"), H.read_embeddings),
        ("error", r"embeddings\.h5: not a readable HDF5", EFE, corrupt_post("embeddings.h5")),
    ),
    Case(
        "read-zero-norm-row",
        reading(lambda t: raw_h5(t / "other.h5", with_row(img4, 1, 0.0), txt4), H.read_embeddings),
        ("error", r"other\.h5: /image/embedding has 1 zero-norm row\(s\) \(ids \['i1'\]", EFE),
    ),
    Case(
        "read-zero-norm-iter",
        reading(lambda t: raw_h5(t / "other.h5", img4, with_row(txt4, 3, 0.0)), lambda p: _chunks(p, "text", 2)),
        ("error", r"other\.h5: /text/embedding has zero-norm row\(s\) \(ids \['t3'\], first in row 3", EFE),
    ),
    Case(
        "read-nan-iter",
        reading(lambda t: raw_h5(t / "other.h5", with_row(img4, (3, 1), np.inf), txt4), _chunks),
        ("error", r"other\.h5: /image/embedding has NaN/inf value\(s\); first in row 3", EFE),
    ),
    Case(
        "write-zero-norm",
        reading(
            lambda t: t / "results" / "embeddings.h5",
            lambda p: H.write_embeddings(p, embeddings_from_pairs(img4, with_row(txt4, 2, 0.0))),
        ),
        ("error", r"embeddings\.h5: /text/embedding has 1 zero-norm row\(s\) \(ids \[2\]", EFE),
    ),
    Case(
        "write-empty",
        reading(
            lambda t: t / "results" / "embeddings.h5",
            lambda p: H.write_embeddings(p, embeddings_from_pairs(np.zeros((0, 8)), np.zeros((0, 8)))),
        ),
        ("error", r"embeddings\.h5: no image rows and no text rows", EFE, _no_output),
    ),
    # ---- shards and merge
    Case(
        "merge-shard-edited",
        merging(_edited),
        ("error", r"shard \S*1-of-2\.h5: content checksum mismatch", ME, shard_gone("1-of-2.h5")),
    ),
    Case(
        "merge-shard-truncated",
        merging(_truncated_shard),
        ("error", r"shard \S*2-of-2\.h5: unreadable", ME, shard_gone("2-of-2.h5")),
    ),
    Case(
        "merge-shard-other-model",
        merging(_other_model),
        ("error", r"shard provenance differs: (pretrained|checkpoint_sha256)=.*2-of-2\.h5", ME),
        "already behaved well",
    ),
    Case(
        "merge-shard-missing",
        merging(_missing_shard),
        ("error", r"missing shard: \S*2-of-2\.h5", ME),
        "already behaved well",
    ),
    Case(
        "merge-other-manifest",
        merging(_other_manifest),
        ("error", r"shards were embedded from a different manifest than faults's", ME),
        "already behaved well",
    ),
    Case(
        "merge-nan-caption-error",
        merging(_nan_caption("error")),
        ("error", r"faults: the model gave 1 caption embedding\(s\) that are non-finite .*ids \[1\]", ME, _no_output),
    ),
    Case("merge-nan-caption-skip", merging(_nan_caption("skip")), ("skip", _nan_skip_pred)),
    Case("merge-rejects-complete", merging(_rejects_everywhere), ("skip", _rejects_pred)),
    Case(
        "merge-all-rejected",
        merging(_all_zero),
        ("error", r"faults: every image was rejected \(6 of 6", ME, _no_output),
    ),
    # ---- models and checkpoints
    Case(
        "model-no-pretrained",
        loading(lambda t, e: None),
        ("error", r"model 'tiny-clip': no pretrained weights given \(pretrained=None\)", MLE),
    ),
    Case(
        "model-empty-pretrained",
        loading(lambda t, e: ""),
        ("error", r"no pretrained weights given \(pretrained=''\)", MLE),
    ),
    Case(
        "ckpt-missing-file",
        loading(lambda t, e: t / "nope.pt"),
        ("error", r"checkpoint file not found: \S*nope\.pt", MLE),
    ),
    Case(
        "ckpt-empty-dict",
        loading(_ck_torch(lambda t: {})),
        ("error", r"checkpoint \S*w\.pt: the state dict is empty", MLE),
    ),
    Case(
        "ckpt-random-bytes",
        loading(_ck_bytes(np.random.default_rng(3).bytes(2048))),
        ("error", r"checkpoint \S*w\.pt: not a PyTorch checkpoint", MLE),
    ),
    Case(
        "ckpt-text-file",
        loading(_ck_bytes(b"these are not weights\n" * 20)),
        ("error", r"checkpoint \S*w\.pt: not a PyTorch checkpoint", MLE),
    ),
    Case(
        "ckpt-pickled-list",
        loading(_ck_pickle(lambda t: [1, 2, 3])),
        ("error", r"checkpoint \S*w\.pt: not a PyTorch checkpoint", MLE),
    ),
    Case(
        "ckpt-torch-saved-list",
        loading(_ck_torch(lambda t: [1, 2, 3])),
        ("error", r"checkpoint \S*w\.pt: holds a list, not a state dict", MLE),
    ),
    Case(
        "ckpt-other-arch",
        loading(_ck_other_arch),
        ("error", r"checkpoint \S*wide\.pt: its state dict does not fit architecture 'tiny-clip'", MLE),
    ),
    Case(
        "ckpt-unsafe-pickle",
        loading(_ck_pickle(lambda t: _Evil(t / "PWNED"))),
        ("error", r"checkpoint \S*w\.pt: (refused|not a PyTorch checkpoint)", MLE, _marker_absent),
    ),
    Case(
        "ckpt-unsafe-torch-save",
        loading(_ck_torch(lambda t: {"w": _Evil(t / "PWNED")})),
        ("error", r"checkpoint \S*w\.pt: refused: .*posix\.system.*nothing in it ran", MLE, _marker_absent),
    ),
    Case(
        "device-cuda-without-cuda",
        _cuda_build,
        (
            "error",
            r"the model's device is 'cuda', but torch \S+ \((built for CUDA \S+|a CPU-only build)\) sees no CUDA "
            r"device: .*(check|install)",
            MLE,
        ),
    ),
    # ---- temporary files of atomic writers
    Case("atomic-stale-tmp-removed", _stale_tmp, ("ok", _stale_pred)),
    Case(
        "atomic-failed-write-leaves-nothing",
        _failed_write,
        ("ok", lambda r, t: r[0] is not None and r[1] == []),
        "already behaved well",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fault(case, tmp_path, env):
    call = case.build(tmp_path, env)
    kind = case.expect[0]
    if kind == "error":
        regex, exc_name = case.expect[1], case.expect[2]
        with pytest.raises(Exception) as info:
            call()
        exc = info.value
        assert type(exc).__name__ == exc_name, f"{type(exc).__name__}: {exc}"
        assert re.search(regex, str(exc)), f"message {str(exc)!r} does not match {regex!r}"
        if len(case.expect) > 3:
            case.expect[3](tmp_path, exc)
    else:
        assert kind in ("ok", "skip")
        result = call()
        assert case.expect[1](result, tmp_path)


def test_table_is_large_and_ids_unique():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 20
