"""The offline demo dataset: coloured shapes with template captions, generated from a seed.

It exists so that every rule of the workflow can run without network or weights. Its
numbers say nothing about CLIP: it is embedded by a tiny, randomly initialised model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (140, 60, 180),
    "orange": (240, 140, 30),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}
SHAPES = ("circle", "square", "triangle", "cross")
TEMPLATES = (
    "a {size} {colour} {shape} on a {bg} background",
    "a photo of a {colour} {shape}",
    "a {shape} drawn in {colour}",
    "one {size} {colour} {shape}",
)


def _draw(draw: ImageDraw.ImageDraw, shape: str, box, colour):
    x0, y0, x1, y1 = box
    if shape == "circle":
        draw.ellipse(box, fill=colour)
    elif shape == "square":
        draw.rectangle(box, fill=colour)
    elif shape == "triangle":
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=colour)
    else:
        w = (x1 - x0) / 3
        draw.rectangle((x0 + w, y0, x1 - w, y1), fill=colour)
        draw.rectangle((x0, y0 + w, x1, y1 - w), fill=colour)


def make_demo_dataset(
    out_dir: str | os.PathLike, n_images: int = 96, captions_per_image: int = 2, image_size: int = 64, seed: int = 0
) -> dict:
    """Write ``images/demo_NNNNN.png`` and ``captions.jsonl`` under ``out_dir``; return counts."""
    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    names = list(COLOURS)
    rows = []
    for i in range(n_images):
        shape = SHAPES[rng.integers(len(SHAPES))]
        colour = names[rng.integers(len(names))]
        bg = names[rng.integers(len(names))]
        while bg == colour:
            bg = names[rng.integers(len(names))]
        frac = rng.uniform(0.3, 0.8)
        size = "small" if frac < 0.5 else "large"
        img = Image.new("RGB", (image_size, image_size), COLOURS[bg])
        s = frac * image_size
        x0 = rng.uniform(0, image_size - s)
        y0 = rng.uniform(0, image_size - s)
        _draw(ImageDraw.Draw(img), shape, (x0, y0, x0 + s, y0 + s), COLOURS[colour])
        arr = np.asarray(img, dtype=np.int16) + rng.integers(-12, 13, size=(image_size, image_size, 3))
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        file = f"demo_{i:05d}.png"
        img.save(out / "images" / file)
        order = rng.permutation(len(TEMPLATES))[:captions_per_image]
        for t in order:
            rows.append(
                {
                    "image": file,
                    "image_id": i,
                    "caption_id": len(rows),
                    "caption": TEMPLATES[t].format(size=size, colour=colour, shape=shape, bg=bg),
                }
            )
    tmp = out / ".captions.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out / "captions.jsonl")
    return {"images": n_images, "captions": len(rows)}
