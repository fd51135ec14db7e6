"""A synthetic image-caption world whose concept frequencies are known (issue: a CLIP that learned).

A *concept* is a colour × shape pair ("red circle"). A world fixes which concepts exist, how often each one
appears in a model's training set (its *frequency law*: Zipf with exponent ``s``, uniform, or an explicit table)
and which concept gets which Zipf rank (``concept_seed``). Images draw the concept's shape in its colour on a
background of another colour, at a random size and position (nuisance factors the captions may or may not
mention); captions paraphrase the concept through several templates.

* :func:`concept_frequencies` is the law: ``{concept: probability in the training set}``.
* :func:`sample_concepts` draws training concepts by the law (or uniformly: the control arm of an experiment,
  which trains on uniform sampling but is scored against the same assigned frequencies).
* :func:`render` draws one image; :func:`caption` writes one caption.
* :func:`make_world_split` writes an evaluation (or training) set to disk in the folder format the workflow
  reads (``images/`` + ``captions.jsonl``), every row carrying ``concept`` and ``train_frequency``. The
  evaluation set is balanced over concepts by default, so that its own composition does not decide conformity.

Everything is a pure function of the world spec and a seed: the same spec gives the same images, bit for bit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .demo import COLOURS, SHAPES, _draw

LAWS = ("zipf", "uniform", "table")
SIZES = ("small", "large")
TEMPLATES = (
    "a {colour} {shape}",
    "a photo of a {colour} {shape}",
    "a {size} {colour} {shape} on a {bg} background",
    "a {shape} drawn in {colour}",
    "one {colour} {shape}",
    "a picture showing a {colour} {shape}",
    "there is a {size} {colour} {shape}",
    "a {colour} coloured {shape} on {bg}",
)
DEFAULTS = {
    "colours": len(COLOURS),
    "shapes": len(SHAPES),
    "law": "zipf",
    "zipf_s": 1.1,
    "table": None,
    "concept_seed": 0,
    "image_size": 32,
}


def spec(world: Mapping | None = None) -> dict:
    """A complete world spec: ``world`` over :data:`DEFAULTS`, checked (ValueError naming the key)."""
    w = {**DEFAULTS, **(dict(world or {}))}
    if not 1 <= int(w["colours"]) <= len(COLOURS):
        raise ValueError(f"world.colours: 1 to {len(COLOURS)}, got {w['colours']}")
    if not 1 <= int(w["shapes"]) <= len(SHAPES):
        raise ValueError(f"world.shapes: 1 to {len(SHAPES)}, got {w['shapes']}")
    if int(w["colours"]) < 2:
        raise ValueError("world.colours: at least 2 (the background takes another colour than the shape)")
    if w["law"] not in LAWS:
        raise ValueError(f"world.law: one of {LAWS}, got {w['law']!r}")
    if w["law"] == "table":
        missing = set(concepts(w)) - set(w["table"] or {})
        if missing:
            raise ValueError(f"world.table: no weight for {sorted(missing)[:5]}")
    return w


def concepts(world: Mapping) -> list[str]:
    """The world's concepts, ``"<colour> <shape>"``, colour-major."""
    cols = list(COLOURS)[: int(world["colours"])]
    return [f"{c} {s}" for c in cols for s in SHAPES[: int(world["shapes"])]]


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Zipf's law over ranks 1..n: ``p(r) ∝ r^(−s)``, normalised (``s = 0`` is uniform)."""
    r = np.arange(1, n + 1, dtype=np.float64)
    w = r ** (-float(s))
    return w / w.sum()


def concept_frequencies(world: Mapping) -> dict[str, float]:
    """Each concept's probability in the training set under the world's law.

    Zipf ranks go to concepts in the order of a permutation seeded by ``concept_seed``, so which concept is
    common does not follow the colour or shape order; an explicit table is normalised to sum to 1.
    """
    w = spec(world)
    names = concepts(w)
    if w["law"] == "uniform":
        return {c: 1.0 / len(names) for c in names}
    if w["law"] == "table":
        t = np.asarray([float(w["table"][c]) for c in names])
        if (t < 0).any() or t.sum() <= 0:
            raise ValueError("world.table: weights must be >= 0 with a positive sum")
        return dict(zip(names, (t / t.sum()).tolist(), strict=True))
    order = np.random.default_rng(int(w["concept_seed"])).permutation(len(names))
    p = zipf_weights(len(names), float(w["zipf_s"]))
    return {names[i]: float(p[rank]) for rank, i in enumerate(order)}


def sample_concepts(world: Mapping, n: int, rng: np.random.Generator, *, sampling: str = "law") -> list[str]:
    """``n`` training concepts drawn i.i.d. by the world's law (``sampling="law"``) or uniformly (``"uniform"``)."""
    freq = concept_frequencies(world)
    names = list(freq)
    p = np.asarray([freq[c] for c in names]) if sampling == "law" else None
    if sampling not in ("law", "uniform"):
        raise ValueError(f"sampling: 'law' or 'uniform', got {sampling!r}")
    return [names[i] for i in rng.choice(len(names), size=n, p=p)]


def balanced_concepts(world: Mapping, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` concepts with every concept as often as possible (counts differ by at most one), shuffled."""
    names = concepts(spec(world))
    reps = -(-n // len(names))
    out = (names * reps)[:n]
    rng.shuffle(out)
    return out


def nuisance(world: Mapping, concept: str, rng: np.random.Generator) -> dict:
    """Background colour (never the shape's), size fraction and position of one image."""
    colour = concept.split(" ")[0]
    cols = [c for c in list(COLOURS)[: int(world["colours"])] if c != colour]
    frac = float(rng.uniform(0.35, 0.85))
    size = int(world["image_size"])
    s = frac * size
    return {
        "bg": cols[int(rng.integers(len(cols)))],
        "size": "small" if frac < 0.6 else "large",
        "frac": frac,
        "x0": float(rng.uniform(0, size - s)),
        "y0": float(rng.uniform(0, size - s)),
        "noise_seed": int(rng.integers(2**31)),
    }


def render(world: Mapping, concept: str, nz: Mapping) -> Image.Image:
    """The image of ``concept`` with nuisance factors ``nz`` (from :func:`nuisance`)."""
    colour, shape = concept.split(" ")
    size = int(world["image_size"])
    img = Image.new("RGB", (size, size), COLOURS[nz["bg"]])
    s = nz["frac"] * size
    _draw(ImageDraw.Draw(img), shape, (nz["x0"], nz["y0"], nz["x0"] + s, nz["y0"] + s), COLOURS[colour])
    noise = np.random.default_rng(nz["noise_seed"]).integers(-12, 13, size=(size, size, 3))
    arr = np.asarray(img, dtype=np.int16) + noise
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def caption(concept: str, nz: Mapping, rng: np.random.Generator) -> str:
    """One paraphrase of ``concept`` (some templates mention the nuisance size and background)."""
    colour, shape = concept.split(" ")
    t = TEMPLATES[int(rng.integers(len(TEMPLATES)))]
    return t.format(colour=colour, shape=shape, size=nz["size"], bg=nz["bg"])


def make_world_split(
    out_dir: str | os.PathLike,
    world: Mapping,
    *,
    n_images: int,
    captions_per_image: int = 2,
    balanced: bool = True,
    seed: int = 0,
) -> dict:
    """Write ``images/w_NNNNN.png`` and ``captions.jsonl`` (with ``concept`` and ``train_frequency`` per row).

    ``balanced`` (default): every concept equally often (an evaluation set); otherwise concepts are drawn by
    the world's law (a training-like set). Returns counts and the concept frequencies.
    """
    w = spec(world)
    freq = concept_frequencies(w)
    rng = np.random.default_rng(seed)
    chosen = balanced_concepts(w, n_images, rng) if balanced else sample_concepts(w, n_images, rng)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, concept in enumerate(chosen):
        nz = nuisance(w, concept, rng)
        file = f"w_{i:05d}.png"
        render(w, concept, nz).save(out / "images" / file)
        for _ in range(captions_per_image):
            rows.append(
                {
                    "image": file,
                    "image_id": i,
                    "caption_id": len(rows),
                    "caption": caption(concept, nz, rng),
                    "concept": concept,
                    "train_frequency": freq[concept],
                }
            )
    tmp = out / ".captions.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, out / "captions.jsonl")
    return {"images": len(chosen), "captions": len(rows), "concepts": len(freq), "frequencies": freq}
