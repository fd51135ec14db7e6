"""Raw (unnormalised) CLIP embeddings of a manifest shard, and merging shards.

- :func:`load_model` builds any open_clip model: by name + pretrained tag, or from a
  local checkpoint file (loaded weights-only), optionally from a JSON model config.
- :func:`embed_shard` embeds one contiguous slice of the manifest's images and one of
  its captions. A DataLoader decodes JPEGs in worker processes while the model runs.
- :func:`merge_shards` checks that every shard is present, unchanged since it was written
  (``content_sha256``, see :func:`shard_checksum`; an unreadable or edited shard is deleted so
  the next run re-embeds it) and that all shards share the same provenance, applies the
  dataset's on_bad_item policy to NaN/inf and zero-norm rows, then writes the project's
  embeddings file with the complete list of rejects in ``attrs["rejects"]``.
- Every file is written atomically through :func:`clipgeom.atomic.atomic_path`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path
from .data import manifest_checksum, shard_slice
from .h5io import Embeddings, attr_value, bad_rows, write_embeddings
from .hashing import sha256_file, sha256_hex
from .imagesource import BadImageError, ImageSource
from .progress import Progress

log = logging.getLogger(__name__)

# Provenance attributes that must agree across the shards of one embeddings file.
PROVENANCE_KEYS = (
    "model",
    "arch",
    "pretrained",
    "checkpoint_sha256",
    "precision",
    "device_type",
    "open_clip_version",
    "torch_version",
    "manifest_checksum",
    "n_shards",
    "embed_dim",
    "logit_scale",
    "dataset",
)


# ----------------------------------------------------------------------------- model
class ModelLoadError(ValueError):
    """A model that cannot be built as configured; the message names the file or setting and what to check."""


# Environment variables by which a scheduler tells a job which GPUs it was given.
_GPU_ALLOCATION_VARS = ("SLURM_GPUS_ON_NODE", "SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS", "CUDA_VISIBLE_DEVICES")


def gpu_allocation(environ=None) -> str | None:
    """The variable that says this job was given a GPU (``NAME=value``), or None.

    SLURM sets ``SLURM_GPUS_ON_NODE`` / ``SLURM_JOB_GPUS`` / ``SLURM_STEP_GPUS`` for a job that asked for GPUs
    (the executor plugin turns the rule's ``gpu=1`` into ``--gpus=1``), and most schedulers set
    ``CUDA_VISIBLE_DEVICES``. Empty, ``0`` counts, ``-1`` and ``NoDevFiles`` mean none.
    """
    env = os.environ if environ is None else environ
    for name in _GPU_ALLOCATION_VARS:
        value = (env.get(name) or "").strip()
        if not value or value in ("-1", "NoDevFiles", "none", "(null)"):
            continue
        if name == "SLURM_GPUS_ON_NODE" and value.isdigit() and int(value) == 0:
            continue
        return f"{name}={value}"
    return None


def _torch_build(torch) -> str:
    build = torch.version.cuda
    return f"torch {torch.__version__} (" + (f"built for CUDA {build}" if build else "a CPU-only build") + ")"


def _no_gpu_hint(torch) -> str:
    if torch.version.cuda is None:
        return "install a CUDA build of torch (README: Install, on a CUDA cluster), or set the model's device: cpu"
    return (
        f"check that nvidia-smi works on this node and that its NVIDIA driver supports CUDA {torch.version.cuda} "
        "(a driver older than the torch build hides the GPU: install the torch build that matches the driver, "
        "README: Install), or set the model's device: cpu"
    )


def resolve_device(device: str, environ=None) -> str:
    """The torch device for a model's ``device`` setting; logs the choice and why.

    ``cuda`` without a usable GPU is an error. ``auto`` takes the GPU when torch sees one; without one it
    falls back to the CPU only when no GPU was allocated to the job: a job that holds a GPU
    (:func:`gpu_allocation`) while torch sees none fails, naming torch's CUDA build and what to check,
    instead of embedding on the CPU while the GPU sits idle.
    """
    import torch

    if device == "cpu":
        log.info("device: cpu (the model's device setting)")
        return "cpu"
    allocated = gpu_allocation(environ)
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        log.info("device: cuda (%s; %s; %s)", name, _torch_build(torch), allocated or "no scheduler GPU variable")
        return "cuda"
    if device == "cuda" or allocated:
        why = (
            "the model's device is 'cuda'"
            if device == "cuda"
            else f"this job was given a GPU ({allocated}) and the model's device is 'auto'"
        )
        raise ModelLoadError(f"{why}, but {_torch_build(torch)} sees no CUDA device: {_no_gpu_hint(torch)}")
    log.info(
        "device: cpu (device 'auto': %s sees no CUDA device and no GPU was allocated to this job)", _torch_build(torch)
    )
    return "cpu"


def register_model_config(model_config: str | os.PathLike | None) -> None:
    """Make a JSON model config known to open_clip under its file stem."""
    if model_config:
        import open_clip

        path = Path(model_config)
        if not path.exists():
            raise FileNotFoundError(f"model config not found: {path}")
        open_clip.add_model_config(path)


def make_random_checkpoint(arch: str, model_config: str | None, seed: int, out: str | os.PathLike) -> Path:
    """Seeded random weights for `arch`, saved as a state dict (the demo's 'pretrained' file).

    This is the only way to embed with random weights: the file is then loaded as ``pretrained``."""
    import open_clip
    import torch

    register_model_config(model_config)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch, pretrained=None)
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.save(model.state_dict(), tmp)
    return out


CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz")


def check_checkpoint(path: str | os.PathLike) -> None:
    """Load a checkpoint file weights-only and check it is a non-empty state dict of tensors.

    Refuses (naming the file): a file torch cannot read, a pickle that holds anything but
    tensors and plain containers (an unsafe pickle is refused by the weights-only unpickler
    before anything in it runs), a checkpoint that is not a dict, or one without tensors.
    """
    import torch

    path = Path(path)
    if path.suffix.lower() in (".npz", ".npy"):
        return  # big_vision numpy weights: open_clip reads them with numpy (no pickle)
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file

            ckpt = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own error types
            raise ModelLoadError(f"checkpoint {path}: not a readable safetensors file ({type(e).__name__}: {e})") from e
    else:
        import pickle
        import warnings

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            msg = str(e)
            if "GLOBAL" in msg:
                what = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln), "a blocked global")
                raise ModelLoadError(
                    f"checkpoint {path}: refused: it holds Python objects other than tensors, which only an "
                    f"unsafe (code-running) load could build ({what}). It was loaded weights-only, so nothing "
                    "in it ran; use a plain state dict of tensors"
                ) from None
            detail = next((ln.strip() for ln in msg.splitlines() if ln.strip().startswith("Unsupported")), "")
            raise ModelLoadError(
                f"checkpoint {path}: not a PyTorch checkpoint: weights-only loading failed"
                f"{' (' + detail + ')' if detail else ''}; it is not a state dict saved with "
                "torch.save (or it holds objects other than tensors)"
            ) from None
        except Exception as e:  # EOFError, KeyError, RuntimeError (bad zip), ... from a file that is no checkpoint
            raise ModelLoadError(
                f"checkpoint {path}: not a PyTorch checkpoint ({type(e).__name__}: {e}); "
                "expected a state dict saved with torch.save"
            ) from None
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        ckpt = ckpt["state_dict"]
    if not isinstance(ckpt, dict):
        raise ModelLoadError(
            f"checkpoint {path}: holds a {type(ckpt).__name__}, not a state dict (a dict of parameter name -> tensor)"
        )
    n_tensors = sum(isinstance(v, torch.Tensor) for v in ckpt.values())
    if not n_tensors:
        raise ModelLoadError(f"checkpoint {path}: the state dict is empty (no tensors; {len(ckpt)} entries)")


def load_model(
    arch: str, pretrained: str | None, model_config: str | None = None, precision: str = "fp32", device: str = "auto"
):
    """(model, preprocess, tokenizer, info) for an open_clip model, in eval mode.

    ``pretrained`` is required: an open_clip pretrained tag or a checkpoint file (loaded
    weights-only).  Random weights only come from :func:`make_random_checkpoint` (``init_seed``).
    Raises :class:`ModelLoadError` naming the file or setting for anything else.
    """
    import open_clip
    import torch

    if pretrained is None or not str(pretrained).strip() or str(pretrained).strip().lower() == "none":
        raise ModelLoadError(
            f"model {arch!r}: no pretrained weights given (pretrained={pretrained!r}); set pretrained to an "
            "open_clip tag or a checkpoint file. Random weights are only made on purpose: set init_seed "
            "and a pretrained file path, and the workflow writes a seeded random checkpoint there"
        )
    pretrained = str(pretrained)
    register_model_config(model_config)
    device = resolve_device(device)
    if precision != "fp32" and device == "cpu":
        raise ValueError(f"precision {precision} needs a GPU; use fp32 on CPU")
    info = {"arch": arch, "pretrained": pretrained, "checkpoint_sha256": "none"}
    is_file = Path(pretrained).is_file()
    if (
        not is_file
        and (Path(pretrained).suffix.lower() in CHECKPOINT_SUFFIXES or os.sep in pretrained)
        and not pretrained.startswith("hf-hub:")
    ):
        raise ModelLoadError(f"model {arch!r}: checkpoint file not found: {pretrained}")
    if is_file:
        check_checkpoint(pretrained)
        info["checkpoint_sha256"] = sha256_file(pretrained)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            arch,
            pretrained=pretrained,
            device=device,
            weights_only=True,
            precision="fp32",  # weights stay fp32; fp16/bf16 run under autocast
        )
    except RuntimeError as e:
        msg = str(e)
        if is_file and ("state_dict" in msg or "size mismatch" in msg or "Missing key" in msg):
            first = "; ".join(ln.strip() for ln in msg.splitlines()[:4] if ln.strip())
            raise ModelLoadError(
                f"checkpoint {pretrained}: its state dict does not fit architecture {arch!r} "
                f"(a checkpoint of another model?): {first[:600]}"
            ) from None
        if not is_file:
            raise ModelLoadError(
                f"model {arch!r}: pretrained {pretrained!r} is neither a file nor weights "
                f"open_clip can fetch ({msg.splitlines()[0] if msg else type(e).__name__}); "
                "offline runs need the weights in the cache or a local file"
            ) from e
        raise
    except (KeyError, StopIteration, ValueError) as e:
        if is_file:
            raise ModelLoadError(
                f"checkpoint {pretrained}: cannot be loaded into architecture {arch!r} ({type(e).__name__}: {e})"
            ) from None
        raise
    model.eval()
    tokenizer = open_clip.get_tokenizer(arch)
    info.update(
        {
            "device": device,
            "device_type": device,
            "device_name": torch.cuda.get_device_name(0) if device == "cuda" else platform.processor() or "cpu",
            "precision": precision,
            "logit_scale": float(model.logit_scale.exp().item()),
            "open_clip_version": open_clip.__version__,
            "torch_version": torch.__version__,
        }
    )
    return model, preprocess, tokenizer, info


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


def _autocast(device: str, precision: str):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    return torch.autocast(device_type=device, dtype=dtype)


def embed_images(
    model, preprocess, info, image_root, files, rows, *, batch_size=64, workers=2, skip_bad=False, progress=None
):
    """Raw image embeddings (float32) of `files`; returns (embeddings, kept rows, sha256s, rejects)."""
    import torch
    from torch.utils.data import DataLoader

    ds = ManifestImages(image_root, files, rows, preprocess, skip_bad)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=_collate,
        pin_memory=info["device"] == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    out, kept, shas, rejects = [], [], [], []
    bar = Progress(len(ds), "embed images", "images", progress)
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
    bar = Progress(len(captions), "embed texts", "texts", progress)
    with torch.inference_mode(), _autocast(info["device"], info["precision"]):
        for s in range(0, len(captions), batch_size):
            tokens = tokenizer(captions[s : s + batch_size]).to(info["device"])
            out.append(model.encode_text(tokens, normalize=False).float().cpu().numpy())
            bar.update(min(batch_size, len(captions) - s))
    rate = bar.close()
    arr = np.concatenate(out) if out else np.zeros((0, _embed_dim(model)), np.float32)
    return arr.astype(np.float32, copy=False), rate


def _embed_dim(model) -> int:
    return int(
        model.text_projection.shape[1]
        if getattr(model, "text_projection", None) is not None
        else model.visual.output_dim
    )


# ----------------------------------------------------------------------------- shards
def embed_shard(
    manifest: dict,
    image_root,
    model_cfg: dict,
    model_name: str,
    shard: int,
    n_shards: int,
    out_path,
    *,
    batch_size=64,
    text_batch_size=256,
    workers=2,
    threads=None,
    progress=None,
) -> dict:
    """Embed shard `shard` (1-based) of `n_shards` and write it to `out_path` atomically."""
    import torch

    if threads:
        from clipgeom.threads import confine

        confine(int(threads))  # torch, OpenMP, BLAS (and DataLoader workers' torch) on the job's threads
    torch.manual_seed(0)
    model, preprocess, tokenizer, info = load_model(
        model_cfg["arch"],
        model_cfg.get("pretrained"),
        model_cfg.get("model_config"),
        model_cfg.get("precision", "fp32"),
        model_cfg.get("device", "auto"),
    )
    images, captions = manifest["images"], manifest["captions"]
    isl = shard_slice(len(images), shard, n_shards)
    tsl = shard_slice(len(captions), shard, n_shards)
    skip_bad = manifest.get("policy") == "skip"
    rows = list(range(len(images)))[isl]
    files = [images[r]["file"] for r in rows]
    log.info(
        "shard %d/%d: %d images (rows %d:%d), %d captions (rows %d:%d) on %s, %s",
        shard,
        n_shards,
        len(rows),
        isl.start,
        isl.stop,
        tsl.stop - tsl.start,
        tsl.start,
        tsl.stop,
        info["device"],
        info["precision"],
    )
    if rows:
        img, kept, shas, rejects, img_rate = embed_images(
            model,
            preprocess,
            info,
            image_root,
            files,
            rows,
            batch_size=batch_size,
            workers=workers,
            skip_bad=skip_bad,
            progress=progress,
        )
    else:
        img, kept, shas, rejects, img_rate = np.zeros((0, _embed_dim(model)), np.float32), [], [], [], float("nan")
    for row, why in rejects:
        log.warning("skipped image id %r: %s", images[row]["id"], why)
    txt, txt_rate = embed_texts(
        model, tokenizer, info, [c["caption"] for c in captions[tsl]], batch_size=text_batch_size, progress=progress
    )
    log.info(
        "shard %d/%d done: %.1f images/s, %.1f texts/s, %d images rejected",
        shard,
        n_shards,
        img_rate,
        txt_rate,
        len(rejects),
    )
    attrs = dict(info)
    attrs.update(
        {
            "model": model_name,
            "dataset": manifest["dataset"],
            "manifest_checksum": manifest_checksum(manifest),
            "n_shards": n_shards,
            "shard": shard,
            "embed_dim": int(img.shape[1] if img.size else txt.shape[1]),
            "images_per_s": img_rate,
            "texts_per_s": txt_rate,
        }
    )
    kept_arr = np.asarray(kept, dtype=np.int64)
    txt_rows = np.arange(tsl.start, tsl.stop, dtype=np.int64)
    img = img.reshape(-1, attrs["embed_dim"]).astype(np.float32, copy=False)
    txt = txt.reshape(-1, attrs["embed_dim"]).astype(np.float32, copy=False)
    attrs["content_sha256"] = shard_checksum(img, kept_arr, shas, txt, txt_rows)
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("image/embedding", data=img)
            f.create_dataset("image/row", data=kept_arr)
            f.create_dataset("image/sha256", data=np.asarray(shas, dtype=object), dtype=h5py.string_dtype())
            f.create_dataset("text/embedding", data=txt)
            f.create_dataset("text/row", data=txt_rows)
            f.attrs["image_rows"] = json.dumps([isl.start, isl.stop])
            f.attrs["text_rows"] = json.dumps([tsl.start, tsl.stop])
            f.attrs["rejects"] = json.dumps(
                [{"kind": "image", "item": images[r]["id"], "reason": w, "stage": "embed_shard"} for r, w in rejects]
            )
            for k, v in attrs.items():
                f.attrs[k] = attr_value(v)
    return attrs


def shard_checksum(image: np.ndarray, image_rows, image_sha256, text: np.ndarray, text_rows) -> str:
    """sha256 over a shard's content: both embedding arrays (float32 bytes, with their shapes), the
    manifest rows they belong to and the image files' sha256s. Stored as the ``content_sha256`` attr."""
    h = hashlib.sha256()
    for arr in (
        np.ascontiguousarray(image, dtype=np.float32),
        np.ascontiguousarray(image_rows, dtype=np.int64),
        np.ascontiguousarray(text, dtype=np.float32),
        np.ascontiguousarray(text_rows, dtype=np.int64),
    ):
        h.update(repr(arr.shape).encode())
        h.update(arr.tobytes())
    h.update("\n".join(x.decode() if isinstance(x, bytes) else str(x) for x in image_sha256).encode())
    return h.hexdigest()


class MergeError(ValueError):
    """Shards that cannot be merged; the message names the shard and the key.

    ``shard``: the shard concerned (None when the error is not about one shard); ``removed``: True
    when that shard was unreadable or its content checksum failed and it was deleted, so the next
    run of the workflow re-embeds it.
    """

    def __init__(self, message: str, *, shard=None, removed: bool = False):
        super().__init__(message)
        self.shard = None if shard is None else Path(shard)
        self.removed = bool(removed)


def _remove_bad_shard(p: Path, why: str, cause: Exception | None = None) -> MergeError:
    try:
        p.unlink()
        removed = True
    except OSError:
        removed = False
    log.error("shard %s: %s; %s", p, why, "removed, the next run re-embeds it" if removed else "could not remove it")
    return MergeError(
        f"shard {p}: {why}; "
        + ("the shard was removed, so the next run re-embeds it" if removed else "remove it and rerun to re-embed it"),
        shard=p,
        removed=removed,
    )


def _read_shard(p: Path) -> dict:
    """A shard's attrs and arrays, checked against its content checksum (unreadable/edited: removed)."""
    try:
        with h5py.File(p, "r") as f:
            attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            out = {
                "attrs": attrs,
                "image": f["image/embedding"][()],
                "image_row": f["image/row"][()],
                "sha256": [x.decode() if isinstance(x, bytes) else x for x in f["image/sha256"][()]],
                "text": f["text/embedding"][()],
                "text_row": f["text/row"][()],
            }
            for key in ("n_shards", "image_rows", "text_rows", "rejects", "manifest_checksum"):
                if key not in attrs:
                    raise KeyError(f"attribute {key!r}")
    except (OSError, KeyError, RuntimeError, ValueError) as e:
        raise _remove_bad_shard(p, f"unreadable or incomplete ({type(e).__name__}: {e})") from None
    want = attrs.get("content_sha256")
    if want is None:
        raise _remove_bad_shard(p, "has no content checksum (written by an older version of embed_shard)")
    try:
        got = shard_checksum(out["image"], out["image_row"], out["sha256"], out["text"], out["text_row"])
    except (TypeError, ValueError) as e:
        raise _remove_bad_shard(p, f"content cannot be checked ({e})") from None
    if got != want:
        raise _remove_bad_shard(
            p,
            f"content checksum mismatch (content_sha256 {want[:12]}..., content hashes "
            f"to {got[:12]}...): the shard was changed after embed_shard wrote it",
        )
    return out


def merge_shards(manifest: dict, shard_paths: list, out_path, progress=None) -> Embeddings:
    """Check and concatenate the shards of one dataset x model into the embeddings file.

    Each shard is verified against its ``content_sha256``; an unreadable, truncated or edited
    shard is deleted and :class:`MergeError` names it.  NaN/inf and zero-norm rows are refused
    (``manifest["policy"] == "error"``) or dropped and listed (``"skip"``).  The file's
    ``attrs["rejects"]`` (JSON) holds every reject: ``manifest["rejects"]`` (stage
    ``prepare_dataset``), images that failed to decode (``embed_shard``) and rows dropped here
    (``merge_embeddings``); ``attrs["n_rejected"]`` is their count.  If every image or every
    caption of the manifest is rejected, nothing is written and MergeError is raised.
    ``progress``: the stream for progress lines (default: the job's log, :class:`clipgeom.progress.Progress`).
    """
    if not shard_paths:
        raise MergeError("no shards given")
    policy = manifest.get("policy", "error")
    first = None
    img_parts, img_rows, shas, txt_parts, txt_rows, rejects = [], [], [], [], [], []
    expected_img = expected_txt = 0
    bar = Progress(len(shard_paths), "merge: read and verify shards", "shards", progress)
    for p in shard_paths:
        p = Path(p)
        if not p.exists():
            raise MergeError(f"missing shard: {p}", shard=p)
        sh = _read_shard(p)
        attrs = sh["attrs"]
        if first is None:
            first = (p, attrs)
            if attrs["n_shards"] != len(shard_paths):
                raise MergeError(
                    f"{p}: written as one of {attrs['n_shards']} shards, but {len(shard_paths)} shards were given",
                    shard=p,
                )
        for k in PROVENANCE_KEYS:
            if attrs.get(k) != first[1].get(k):
                raise MergeError(
                    f"shard provenance differs: {k}={attrs.get(k)!r} in {p} but {first[1].get(k)!r} in {first[0]}",
                    shard=p,
                )
        i0, i1 = json.loads(attrs["image_rows"])
        t0, t1 = json.loads(attrs["text_rows"])
        if i0 != expected_img or t0 != expected_txt:
            raise MergeError(
                f"{p}: covers image rows {i0}:{i1} and text rows {t0}:{t1}, expected to "
                f"start at {expected_img} and {expected_txt} (a shard is missing or out of order)",
                shard=p,
            )
        expected_img, expected_txt = i1, t1
        img_parts.append(sh["image"])
        img_rows.append(sh["image_row"])
        shas.extend(sh["sha256"])
        txt_parts.append(sh["text"])
        txt_rows.append(sh["text_row"])
        rejects.extend(dict(r, stage=r.get("stage", "embed_shard")) for r in json.loads(attrs["rejects"]))
        bar.update(1)
    bar.close()
    if manifest_checksum(manifest) != first[1]["manifest_checksum"]:
        raise MergeError(f"shards were embedded from a different manifest than {manifest['dataset']}'s current one")
    images, captions = manifest["images"], manifest["captions"]
    if expected_img != len(images) or expected_txt != len(captions):
        raise MergeError(
            f"shards cover {expected_img}/{len(images)} images and {expected_txt}/{len(captions)} "
            "captions: a shard is missing"
        )
    d = int(first[1]["embed_dim"])
    img_rows = np.concatenate(img_rows).astype(np.int64)
    # the bytes embedded must be the bytes the manifest was built from (an image replaced in between)
    for r, sha in zip(img_rows.tolist(), shas, strict=False):
        want = images[r].get("sha256")
        if want and sha != want:
            raise MergeError(
                f"{manifest['dataset']}: image {images[r]['file']} (id {images[r]['id']!r}) changed "
                "after the manifest was built (its sha256 differs); rerun with --forcerun "
                "prepare_dataset to rebuild the manifest and re-embed"
            )
    txt_rows = np.concatenate(txt_rows).astype(np.int64)
    image = np.concatenate(img_parts).astype(np.float32).reshape(-1, d)
    text = np.concatenate(txt_parts).astype(np.float32).reshape(-1, d)

    # NaN/inf or zero-norm rows out of the model: refused, or dropped and listed
    bad_img, bad_txt = bad_rows(image), bad_rows(text)
    if (bad_img or bad_txt) and policy != "skip":
        for mod, bad, ids in (
            ("image", bad_img, [images[r]["id"] for r in img_rows]),
            ("caption", bad_txt, [captions[r]["id"] for r in txt_rows]),
        ):
            if bad:
                rows = sorted(bad)
                raise MergeError(
                    f"{manifest['dataset']}: the model gave {len(rows)} {mod} embedding(s) that are "
                    f"{bad[rows[0]].replace(' embedding', '')} (ids {[ids[r] for r in rows[:10]]}"
                    f"{' ...' if len(rows) > 10 else ''}; shards {[str(Path(x)) for x in shard_paths]}); "
                    "embeddings files never hold such rows (set on_bad_item: skip to drop and list them)"
                )
    for r in sorted(bad_img):
        rejects.append(
            {"kind": "image", "item": images[img_rows[r]]["id"], "reason": bad_img[r], "stage": "merge_embeddings"}
        )
        log.warning("dropped image %r: %s", images[img_rows[r]]["id"], bad_img[r])
    if bad_img:
        keep = np.asarray([i for i in range(len(image)) if i not in bad_img], dtype=np.int64)
        image, img_rows = image[keep].reshape(-1, d), img_rows[keep]
        shas = [shas[i] for i in keep]

    # rows of images rejected (decoding, or above) are gone: re-index, and drop their captions (listed)
    rejected_image = {r["item"]: r["reason"] for r in rejects if r["kind"] == "image"}
    row_of_id = {images[r]["id"]: i for i, r in enumerate(img_rows)}
    keep_txt, tii = [], []
    for j, r in enumerate(txt_rows):
        c = captions[r]
        if j in bad_txt:
            rejects.append({"kind": "caption", "item": c["id"], "reason": bad_txt[j], "stage": "merge_embeddings"})
            log.warning("dropped caption %r: %s", c["id"], bad_txt[j])
        elif c["image_id"] is None:
            keep_txt.append(j)
            tii.append(-1)
        elif c["image_id"] in row_of_id:
            keep_txt.append(j)
            tii.append(row_of_id[c["image_id"]])
        else:
            why = rejected_image.get(c["image_id"], "not embedded")
            rejects.append(
                {
                    "kind": "caption",
                    "item": c["id"],
                    "reason": f"its image {c['image_id']!r} was rejected ({why})",
                    "stage": "merge_embeddings",
                }
            )
            log.warning("dropped caption %r: its image %r was rejected", c["id"], c["image_id"])
    keep_txt = np.asarray(keep_txt, dtype=np.int64)
    text = text[keep_txt].reshape(-1, d) if len(keep_txt) else np.zeros((0, d), np.float32)
    txt_rows = txt_rows[keep_txt] if len(keep_txt) else np.zeros(0, np.int64)
    all_rejects = [dict(r, stage=r.get("stage", "prepare_dataset")) for r in manifest.get("rejects", [])] + rejects
    for mod, n_in, n_out in (("image", len(images), len(image)), ("caption", len(captions), len(text))):
        if n_in and not n_out:
            raise MergeError(
                f"{manifest['dataset']}: every {mod} was rejected ({n_in} of {n_in}; "
                f"{len(all_rejects)} rejects in all, first: {all_rejects[0]['kind']} "
                f"{all_rejects[0]['item']!r}: {all_rejects[0]['reason']}); no embeddings file written"
            )
    input_checksum = sha256_hex((first[1]["manifest_checksum"] + "".join(shas)).encode())
    attrs = {
        k: first[1][k]
        for k in first[1]
        if k not in ("shard", "image_rows", "text_rows", "rejects", "images_per_s", "texts_per_s", "content_sha256")
    }
    attrs.update(
        {
            "normalized": False,
            "input_checksum": input_checksum,
            "captions_sha256": manifest.get("source", {}).get("captions_sha256", "none"),
            "n_rejected": len(all_rejects),
            "rejects": json.dumps(all_rejects),
            "on_bad_item": policy,
            "python_version": platform.python_version(),
        }
    )
    emb = Embeddings(
        image=image,
        text=text,
        image_id=np.asarray([images[r]["id"] for r in img_rows], dtype=object),
        image_file=np.asarray([images[r]["file"] for r in img_rows], dtype=object),
        text_id=np.asarray([captions[r]["id"] for r in txt_rows], dtype=object),
        text_image_index=np.asarray(tii, dtype=np.int64),
        caption=np.asarray([captions[r]["caption"] for r in txt_rows], dtype=object),
        attrs=attrs,
    )
    # a synthetic world's manifest knows each item's concept and training frequency: carry them along
    for mod, items, rows in (("image", images, img_rows), ("text", captions, txt_rows)):
        if len(items) and all("concept" in it and "train_frequency" in it for it in items):
            setattr(emb, f"{mod}_concept", np.asarray([items[r]["concept"] for r in rows], dtype=object))
            setattr(emb, f"{mod}_train_frequency", np.asarray([items[r]["train_frequency"] for r in rows], float))
    write_embeddings(out_path, emb)
    return emb
