"""Embedding throughput: images/s and texts/s, model-only forward vs end-to-end (decode + forward).

    python benchmarks/bench_embed.py [--out results/benchmarks/embed.json] [--n-images 256]

Models: the demo's tiny model (seeded random weights) and ViT-B-32 (random weights: same
compute as the pretrained one, no download). End-to-end reads COCO-sized JPEGs (640x480)
from disk through the workflow's DataLoader path; model-only runs the same model on
already-decoded, preprocessed tensors. Their ratio shows whether decoding overlaps compute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_images(root: Path, n: int, seed: int = 0) -> list[str]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = []
    # smooth random images compress like photos (pure noise would be unrealistically slow to decode)
    for i in range(n):
        small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
        img = Image.fromarray(small).resize((640, 480), Image.BICUBIC)
        name = f"{i:012d}.jpg"
        img.save(root / name, quality=90)
        names.append(name)
    return names


def bench_model(
    label, arch, pretrained, model_config, root, names, captions, batch_size, workers, threads, precision="fp32"
):
    import torch

    from clipgeom.embed import embed_images, embed_texts, load_model
    from clipgeom.imagesource import ImageSource

    torch.set_num_threads(threads)
    model, preprocess, tokenizer, info = load_model(arch, pretrained, model_config, precision, "auto")
    src = ImageSource(root)
    pixels = torch.stack([preprocess(src.open(n)) for n in names])
    sink = open(os.devnull, "w")
    from clipgeom.embed import _autocast

    # warm-up
    with torch.inference_mode(), _autocast(info["device"], info["precision"]):
        model.encode_image(pixels[:batch_size].to(info["device"]), normalize=False)
    # model-only forward rate on preprocessed tensors (under the same autocast as the workflow)
    t0 = time.perf_counter()
    with torch.inference_mode(), _autocast(info["device"], info["precision"]):
        for s in range(0, len(names), batch_size):
            model.encode_image(pixels[s : s + batch_size].to(info["device"]), normalize=False)
    if info["device"] == "cuda":
        torch.cuda.synchronize()
    forward = len(names) / (time.perf_counter() - t0)
    # end-to-end through the workflow's DataLoader path (decode in workers + forward)
    t0 = time.perf_counter()
    _, _, _, _, _ = embed_images(
        model,
        preprocess,
        info,
        root,
        names,
        list(range(len(names))),
        batch_size=batch_size,
        workers=workers,
        progress=sink,
    )
    e2e = len(names) / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    embed_texts(model, tokenizer, info, captions, batch_size=256, progress=sink)
    texts = len(captions) / (time.perf_counter() - t0)
    return {
        "model": label,
        "device": info["device"],
        "precision": info["precision"],
        "batch_size": batch_size,
        "loader_workers": workers,
        "torch_threads": threads,
        "n_images": len(names),
        "n_texts": len(captions),
        "images_per_s_model_only": forward,
        "images_per_s_end_to_end": e2e,
        "end_to_end_over_model_only": e2e / forward,
        "texts_per_s": texts,
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--models", default="tiny,ViT-B-32")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"), help="fp16/bf16 need a GPU")
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    import torch

    captions = [f"a photo of {k} things on a table next to a window" for k in range(1024)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = make_images(root, a.n_images)
        for m in a.models.split(","):
            from clipgeom.embed import make_random_checkpoint

            # random weights (same compute as the pretrained ones, no download), loaded as a checkpoint file
            arch, cfg = ("tiny-clip", str(REPO / "config/models/tiny-clip.json")) if m == "tiny" else (m, None)
            ckpt = make_random_checkpoint(arch, cfg, 0, root / f"{arch}.pt")
            label = "tiny-clip (demo)" if m == "tiny" else f"{m} (random weights)"
            results.append(
                bench_model(
                    f"{label}, {a.precision}",
                    arch,
                    str(ckpt),
                    cfg,
                    root,
                    names,
                    captions,
                    a.batch_size,
                    a.workers,
                    a.threads,
                    a.precision,
                )
            )
            print(json.dumps(results[-1]), file=sys.stderr)
    out = {
        "benchmark": "embed",
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "results": results,
    }
    print(json.dumps(out, indent=2))
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
