"""Raw (unnormalised) CLIP embeddings of a manifest shard, and merging shards.

- :func:`load_model` builds any open_clip model: by name + pretrained tag, or from a
  local checkpoint file (loaded weights-only), optionally from a JSON model config.
- :func:`embed_shard` embeds one contiguous slice of the manifest's images and one of
  its captions. A DataLoader decodes JPEGs in worker processes while the model runs.
- :func:`merge_shards` checks that every shard is present and that all shards share
  the same provenance, then writes the project's embeddings file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from .data import manifest_checksum, shard_slice
from .h5io import Embeddings, attr_value, write_embeddings
from .imagesource import BadImageError, ImageSource, sha256_hex

log = logging.getLogger(__name__)

# Provenance attributes that must agree across the shards of one embeddings file.
PROVENANCE_KEYS = (
    "model", "arch", "pretrained", "checkpoint_sha256", "precision", "device_type",
    "open_clip_version", "torch_version", "manifest_checksum", "n_shards", "embed_dim",
    "logit_scale", "dataset",
)


# ----------------------------------------------------------------------------- model
def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but torch sees no CUDA device")
    return device


def register_model_config(model_config: str | os.PathLike | None) -> None:
    """Make a JSON model config known to open_clip under its file stem."""
    if model_config:
        import open_clip

        path = Path(model_config)
        if not path.exists():
            raise FileNotFoundError(f"model config not found: {path}")
        open_clip.add_model_config(path)


def make_random_checkpoint(arch: str, model_config: str | None, seed: int, out: str | os.PathLike) -> Path:
    """Seeded random weights for `arch`, saved as a state dict (the demo's 'pretrained' file)."""
    import open_clip
    import torch

    register_model_config(model_config)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, out)
    return out


def load_model(arch: str, pretrained: str | None, model_config: str | None = None,
               precision: str = "fp32", device: str = "auto"):
    """(model, preprocess, tokenizer, info) for an open_clip model, in eval mode."""
    import open_clip
    import torch

    register_model_config(model_config)
    device = resolve_device(device)
    if precision != "fp32" and device == "cpu":
        raise ValueError(f"precision {precision} needs a GPU; use fp32 on CPU")
    info = {"arch": arch, "pretrained": pretrained or "none", "checkpoint_sha256": "none"}
    if pretrained and Path(pretrained).is_file():
        info["checkpoint_sha256"] = _sha256_path(pretrained)
    model, _, preprocess = open_clip.create_model_and_transforms(
        arch, pretrained=pretrained or None, device=device,
        precision="fp32",  # weights stay fp32; fp16/bf16 run under autocast
    )
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    info.update({
        "device": device,
        "device_type": device,
        "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
        "precision": precision,
        "logit_scale": float(model.logit_scale.exp().item()),
        "open_clip_version": open_clip.__version__,
        "torch_version": torch.__version__,
    })
    return model, preprocess, tokenizer, info


def _sha256_path(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- images
class ManifestImages:
    """torch Dataset over manifest images: (pixel tensor, row, sha256 of the file bytes, error)."""

    def __init__(self, image_root, files: list[str], rows: list[int], preprocess, skip_bad: bool):
        self.source = ImageSource(image_root)
        self.files, self.rows, self.preprocess, self.skip_bad = files, rows, preprocess, skip_bad

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import torch

        from .imagesource import decode_image

        name = self.files[i]
        try:
            data = self.source.read_bytes(name)
            img = decode_image(data, f"{self.source.root}/{name}")
        except BadImageError as e:
            if not self.skip_bad:
                raise
            return torch.zeros(0), self.rows[i], "", str(e)
        return self.preprocess(img), self.rows[i], sha256_hex(data), ""


def _collate(batch):
    import torch

    good = [b for b in batch if not b[3]]
    pixels = torch.stack([b[0] for b in good]) if good else None
    return pixels, [b[1] for b in good], [b[2] for b in good], [(b[1], b[3]) for b in batch if b[3]]


class _Rate:
    """A tqdm progress bar in the log with items/s."""

    def __init__(self, total: int, unit: str, stream):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit=unit, file=stream, mininterval=2.0, dynamic_ncols=False,
                        ascii=True, desc=f"embed {unit}s")
        self.t0 = time.perf_counter()
        self.n = 0

    def update(self, k: int):
        self.n += k
        self.bar.update(k)

    def close(self) -> float:
        self.bar.close()
        dt = time.perf_counter() - self.t0
        return self.n / dt if dt > 0 else float("nan")


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(device_type=device, dtype=dtype)


def embed_images(model, preprocess, info, image_root, files, rows, *, batch_size=64, workers=2,
                 skip_bad=False, progress=None):
    """Raw image embeddings (float32) of `files`; returns (embeddings, kept rows, sha256s, rejects)."""
    import torch
    from torch.utils.data import DataLoader

    ds = ManifestImages(image_root, files, rows, preprocess, skip_bad)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=_collate, pin_memory=info["device"] == "cuda",
                        persistent_workers=False, prefetch_factor=4 if workers else None)
    out, kept, shas, rejects = [], [], [], []
    bar = _Rate(len(ds), "image", progress or sys.stderr)
    with torch.inference_mode(), _autocast(info["device"], info["precision"]):
        for pixels, brows, bshas, brej in loader:
            rejects.extend(brej)
            if pixels is not None:
                emb = model.encode_image(pixels.to(info["device"], non_blocking=True), normalize=False)
                out.append(emb.float().cpu().numpy())
                kept.extend(brows)
                shas.extend(bshas)
            bar.update(len(brows) + len(brej))
    rate = bar.close()
    d = _embed_dim(model)
    arr = np.concatenate(out) if out else np.zeros((0, d), np.float32)
    return arr.astype(np.float32, copy=False), kept, shas, rejects, rate


def embed_texts(model, tokenizer, info, captions: list[str], *, batch_size=256, progress=None):
    """Raw text embeddings (float32) of `captions`."""
    import torch

    out = []
    bar = _Rate(len(captions), "text", progress or sys.stderr)
    with torch.inference_mode(), _autocast(info["device"], info["precision"]):
        for s in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[s:s + batch_size]).to(info["device"])
            out.append(model.encode_text(tokens, normalize=False).float().cpu().numpy())
            bar.update(min(batch_size, len(captions) - s))
    rate = bar.close()
    arr = np.concatenate(out) if out else np.zeros((0, _embed_dim(model)), np.float32)
    return arr.astype(np.float32, copy=False), rate


def _embed_dim(model) -> int:
    return int(model.text_projection.shape[1] if getattr(model, "text_projection", None) is not None
               else model.visual.output_dim)


# ----------------------------------------------------------------------------- shards
def embed_shard(manifest: dict, image_root, model_cfg: dict, model_name: str, shard: int, n_shards: int,
                out_path, *, batch_size=64, text_batch_size=256, workers=2, threads=None, progress=None) -> dict:
    """Embed shard `shard` (1-based) of `n_shards` and write it to `out_path` atomically."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    model, preprocess, tokenizer, info = load_model(
        model_cfg["arch"], model_cfg.get("pretrained"), model_cfg.get("model_config"),
        model_cfg.get("precision", "fp32"), model_cfg.get("device", "auto"))
    images, captions = manifest["images"], manifest["captions"]
    isl = shard_slice(len(images), shard, n_shards)
    tsl = shard_slice(len(captions), shard, n_shards)
    skip_bad = manifest.get("policy") == "skip"
    rows = list(range(len(images)))[isl]
    files = [images[r]["file"] for r in rows]
    log.info("shard %d/%d: %d images (rows %d:%d), %d captions (rows %d:%d) on %s, %s",
             shard, n_shards, len(rows), isl.start, isl.stop, tsl.stop - tsl.start, tsl.start, tsl.stop,
             info["device"], info["precision"])
    if rows:
        img, kept, shas, rejects, img_rate = embed_images(
            model, preprocess, info, image_root, files, rows, batch_size=batch_size, workers=workers,
            skip_bad=skip_bad, progress=progress)
    else:
        img, kept, shas, rejects, img_rate = np.zeros((0, _embed_dim(model)), np.float32), [], [], [], float("nan")
    for row, why in rejects:
        log.warning("skipped image id %r: %s", images[row]["id"], why)
    txt, txt_rate = embed_texts(model, tokenizer, info, [c["caption"] for c in captions[tsl]],
                                batch_size=text_batch_size, progress=progress)
    log.info("shard %d/%d done: %.1f images/s, %.1f texts/s, %d images rejected",
             shard, n_shards, img_rate, txt_rate, len(rejects))
    attrs = dict(info)
    attrs.update({
        "model": model_name, "dataset": manifest["dataset"], "manifest_checksum": manifest_checksum(manifest),
        "n_shards": n_shards, "shard": shard, "embed_dim": int(img.shape[1] if img.size else txt.shape[1]),
        "images_per_s": img_rate, "texts_per_s": txt_rate,
    })
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
    try:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image/embedding", data=img.reshape(-1, attrs["embed_dim"]))
            f.create_dataset("image/row", data=np.asarray(kept, dtype=np.int64))
            f.create_dataset("image/sha256", data=np.asarray(shas, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("text/embedding", data=txt.reshape(-1, attrs["embed_dim"]))
            f.create_dataset("text/row", data=np.arange(tsl.start, tsl.stop, dtype=np.int64))
            f.attrs["image_rows"] = json.dumps([isl.start, isl.stop])
            f.attrs["text_rows"] = json.dumps([tsl.start, tsl.stop])
            f.attrs["rejects"] = json.dumps([{"kind": "image", "item": images[r]["id"], "reason": w}
                                             for r, w in rejects])
            for k, v in attrs.items():
                f.attrs[k] = attr_value(v)
        os.replace(tmp, out_path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return attrs


class MergeError(ValueError):
    """Shards that cannot be merged; the message names the shard and the key."""


def merge_shards(manifest: dict, shard_paths: list, out_path) -> Embeddings:
    """Check and concatenate the shards of one dataset x model into the embeddings file."""
    if not shard_paths:
        raise MergeError("no shards given")
    first = None
    img_parts, img_rows, shas, txt_parts, txt_rows, rejects = [], [], [], [], [], []
    expected_img = expected_txt = 0
    for p in shard_paths:
        p = Path(p)
        if not p.exists():
            raise MergeError(f"missing shard: {p}")
        with h5py.File(p, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            if first is None:
                first = (p, attrs)
                if attrs["n_shards"] != len(shard_paths):
                    raise MergeError(f"{p}: written as one of {attrs['n_shards']} shards, "
                                     f"but {len(shard_paths)} shards were given")
            for k in PROVENANCE_KEYS:
                if attrs.get(k) != first[1].get(k):
                    raise MergeError(f"shard provenance differs: {k}={attrs.get(k)!r} in {p} "
                                     f"but {first[1].get(k)!r} in {first[0]}")
            i0, i1 = json.loads(attrs["image_rows"])
            t0, t1 = json.loads(attrs["text_rows"])
            if i0 != expected_img or t0 != expected_txt:
                raise MergeError(f"{p}: covers image rows {i0}:{i1} and text rows {t0}:{t1}, expected to "
                                 f"start at {expected_img} and {expected_txt} (a shard is missing or out of order)")
            expected_img, expected_txt = i1, t1
            img_parts.append(f["image/embedding"][()])
            img_rows.append(f["image/row"][()])
            shas.extend(x.decode() if isinstance(x, bytes) else x for x in f["image/sha256"][()])
            txt_parts.append(f["text/embedding"][()])
            txt_rows.append(f["text/row"][()])
            rejects.extend(json.loads(attrs["rejects"]))
    if manifest_checksum(manifest) != first[1]["manifest_checksum"]:
        raise MergeError(f"shards were embedded from a different manifest than {manifest['dataset']}'s current one")
    images, captions = manifest["images"], manifest["captions"]
    if expected_img != len(images) or expected_txt != len(captions):
        raise MergeError(f"shards cover {expected_img}/{len(images)} images and {expected_txt}/{len(captions)} "
                         "captions: a shard is missing")
    img_rows = np.concatenate(img_rows)
    txt_rows = np.concatenate(txt_rows)
    image = np.concatenate(img_parts).astype(np.float32)
    text = np.concatenate(txt_parts).astype(np.float32)
    # rows of images rejected while decoding are gone: re-index, and drop their captions (logged)
    row_of_id = {images[r]["id"]: i for i, r in enumerate(img_rows)}
    keep_txt, tii = [], []
    for j, r in enumerate(txt_rows):
        c = captions[r]
        if c["image_id"] is None:
            keep_txt.append(j)
            tii.append(-1)
        elif c["image_id"] in row_of_id:
            keep_txt.append(j)
            tii.append(row_of_id[c["image_id"]])
        else:
            rejects.append({"kind": "caption", "item": c["id"], "reason": "its image was rejected"})
            log.warning("dropped caption %r: its image %r was rejected", c["id"], c["image_id"])
    keep_txt = np.asarray(keep_txt, dtype=np.int64)
    text = text[keep_txt] if len(keep_txt) else np.zeros((0, image.shape[1] if image.size else text.shape[1]), np.float32)
    txt_rows = txt_rows[keep_txt] if len(keep_txt) else np.zeros(0, np.int64)
    input_checksum = hashlib.sha256((first[1]["manifest_checksum"] + "".join(shas)).encode()).hexdigest()
    attrs = {k: first[1][k] for k in first[1] if k not in ("shard", "image_rows", "text_rows", "rejects",
                                                         "images_per_s", "texts_per_s")}
    attrs.update({
        "normalized": False, "input_checksum": input_checksum,
        "captions_sha256": manifest.get("source", {}).get("captions_sha256", "none"),
        "n_rejected": len(manifest.get("rejects", [])) + len(rejects),
        "rejects": json.dumps(manifest.get("rejects", []) + rejects),
        "python_version": platform.python_version(),
    })
    emb = Embeddings(
        image=image, text=text,
        image_id=np.asarray([images[r]["id"] for r in img_rows], dtype=object),
        image_file=np.asarray([images[r]["file"] for r in img_rows], dtype=object),
        text_id=np.asarray([captions[r]["id"] for r in txt_rows], dtype=object),
        text_image_index=np.asarray(tii, dtype=np.int64),
        caption=np.asarray([captions[r]["caption"] for r in txt_rows], dtype=object),
        attrs=attrs,
    )
    write_embeddings(out_path, emb)
    return emb
