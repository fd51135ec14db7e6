"""Train a small open_clip model on a synthetic world (:mod:`clipgeom.world`) with the contrastive loss.

The model is any open_clip architecture (a JSON config such as ``config/models/tiny-clip.json``); the
checkpoint is its state dict, which the embedding path loads weights-only through ``pretrained:``, so nothing
downstream changes. Logits (:data:`LOGITS`):

* ``cosine``: CLIP's, ``s · cos(x, y)`` on L2-normalised features, with open_clip's own ``ClipLoss``;
* ``euclidean``: ``−s · ‖x − y‖`` and ``sq_euclidean``: ``−s · ‖x − y‖²`` on the raw features (EuCLIP's forms),
  with the same symmetric cross-entropy (Eq. 7 of the double-ellipsoid paper, any logit matrix).

The scale ``s`` is learned (clamped at 100; cosine: CLIP's initialisation 1/0.07; Euclidean: the value that makes
the first batch's mean distance term 1, since raw distances have no fixed range) or fixed (``logit_scale: 100``).
Training data: a pool of ``n_train`` images whose concepts are drawn by the world's law (or uniformly: the
control arm), rendered once; each step samples a batch from the pool and writes a fresh paraphrase for every
image. Seeds fix the initialisation and the data order: on the CPU the same seed gives the same weights.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from . import world as W

log = logging.getLogger(__name__)

LOGITS = ("cosine", "euclidean", "sq_euclidean")
MAX_LOGIT_SCALE = 100.0
CLIP_INIT_SCALE = 1 / 0.07


@dataclass
class TrainResult:
    """What a training run measured; ``curve`` has one row per logged step."""

    metrics: dict
    curve: dict = field(default_factory=dict)


def contrastive_logits(torch, image, text, scale, kind: str):
    """The logit matrix (rows images, columns texts) of one batch under ``kind`` (see :data:`LOGITS`)."""
    if kind == "cosine":
        x = torch.nn.functional.normalize(image, dim=-1)
        y = torch.nn.functional.normalize(text, dim=-1)
        return scale * x @ y.T
    d2 = (image * image).sum(1, keepdim=True) + (text * text).sum(1)[None, :] - 2.0 * image @ text.T
    d2 = d2.clamp_min(0.0)
    if kind == "sq_euclidean":
        return -scale * d2
    if kind == "euclidean":
        return -scale * torch.sqrt(d2 + 1e-12)
    raise ValueError(f"logits: one of {LOGITS}, got {kind!r}")


def symmetric_ce(torch, s):
    """Eq. 7: the mean of the image→text and text→image cross-entropies, pair j the diagonal."""
    labels = torch.arange(s.shape[0], device=s.device)
    f = torch.nn.functional
    return 0.5 * (f.cross_entropy(s, labels) + f.cross_entropy(s.T, labels))


def _pool(world: Mapping, n: int, seed: int, sampling: str, preprocess, torch):
    rng = np.random.default_rng(seed)
    names = W.sample_concepts(world, n, rng, sampling=sampling)
    nuis = [W.nuisance(world, c, rng) for c in names]
    pixels = torch.stack([preprocess(W.render(world, c, nz)) for c, nz in zip(names, nuis, strict=True)])
    return names, nuis, pixels


def concept_retrieval(
    model, tokenizer, preprocess, world: Mapping, kind: str, scale: float, torch, *, n: int, seed: int
):
    """Held-out image→concept accuracy on a balanced set: each image against one caption per concept
    ("a photo of a <concept>"), under the training geometry. Chance: 1 / number of concepts."""
    names = W.concepts(world)
    rng = np.random.default_rng(seed)
    chosen = W.balanced_concepts(world, n, rng)
    pixels = torch.stack([preprocess(W.render(world, c, W.nuisance(world, c, rng))) for c in chosen])
    with torch.inference_mode():
        img = model.encode_image(pixels, normalize=False).float()
        txt = model.encode_text(tokenizer([f"a photo of a {c}" for c in names]), normalize=False).float()
        s = contrastive_logits(torch, img, txt, scale, kind)
    pred = s.argmax(1).numpy()
    truth = np.asarray([names.index(c) for c in chosen])
    per_concept = {c: float(np.mean(pred[truth == i] == i)) for i, c in enumerate(names)}
    return float(np.mean(pred == truth)), per_concept


def train_clip(
    arch: str,
    model_config: str | None,
    world: Mapping,
    *,
    steps: int = 600,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 50,
    logits: str = "cosine",
    logit_scale: str | float = "learned",
    sampling: str = "law",
    n_train: int = 4096,
    n_eval: int = 512,
    seed: int = 0,
    log_every: int = 20,
    device: str = "cpu",
):
    """Train ``arch`` on ``world``; return ``(model, TrainResult)``. See the module docstring."""
    import open_clip
    import torch

    from .embed import register_model_config

    if logits not in LOGITS:
        raise ValueError(f"logits: one of {LOGITS}, got {logits!r}")
    fixed = None if logit_scale == "learned" else float(logit_scale)
    if fixed is not None and not 0 < fixed <= MAX_LOGIT_SCALE:
        raise ValueError(f"logit_scale: 'learned' or a number in (0, {MAX_LOGIT_SCALE}], got {logit_scale!r}")
    w = W.spec(world)
    register_model_config(model_config)
    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(arch, pretrained=None)
    tokenizer = open_clip.get_tokenizer(arch)
    with torch.no_grad():
        model.logit_scale.fill_(math.log(fixed if fixed is not None else CLIP_INIT_SCALE))
    model.logit_scale.requires_grad_(fixed is None)
    model.to(device).train()
    rng0 = np.random.default_rng(seed + 3)  # paraphrases of the scale probe

    names, nuis, pixels = _pool(w, n_train, seed, sampling, preprocess, torch)
    if fixed is None and logits != "cosine":
        # Distances of raw features have no fixed range: start the learned scale where the first batch's mean
        # distance term is 1 (EuCLIP and MERU scale the features by factors initialised at 1/sqrt(d) instead)
        with torch.no_grad():
            probe = np.random.default_rng(seed + 2).integers(0, n_train, size=min(batch_size, n_train))
            img = model.encode_image(pixels[probe].to(device), normalize=False)
            txt = model.encode_text(
                tokenizer([W.caption(names[i], nuis[i], rng0) for i in probe]).to(device), normalize=False
            )
            mean_term = float(-contrastive_logits(torch, img, txt, 1.0, logits).mean())
            model.logit_scale.fill_(math.log(min(MAX_LOGIT_SCALE, 1.0 / max(mean_term, 1e-6))))
    decay = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim >= 2]
    other = [p for n, p in model.named_parameters() if p.requires_grad and p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": other, "weight_decay": 0.0}], lr=lr
    )

    def rate(step):  # linear warm-up, then cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, rate)
    clip_loss = open_clip.ClipLoss()
    rng = np.random.default_rng(seed + 1)  # data order and paraphrases
    curve = {"step": [], "loss": [], "logit_scale": [], "lr": []}
    t0 = time.perf_counter()
    for step in range(steps):
        idx = rng.integers(0, n_train, size=batch_size)
        texts = [W.caption(names[i], nuis[i], rng) for i in idx]
        img = model.encode_image(pixels[idx].to(device), normalize=False)
        txt = model.encode_text(tokenizer(texts).to(device), normalize=False)
        scale = model.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)
        if logits == "cosine":  # open_clip's own loss
            loss = clip_loss(
                torch.nn.functional.normalize(img, dim=-1), torch.nn.functional.normalize(txt, dim=-1), scale
            )
        else:
            loss = symmetric_ce(torch, contrastive_logits(torch, img, txt, scale, logits))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(max=math.log(MAX_LOGIT_SCALE))
        if step % log_every == 0 or step == steps - 1:
            el = time.perf_counter() - t0
            curve["step"].append(step + 1)
            curve["loss"].append(float(loss.detach()))
            curve["logit_scale"].append(float(scale.detach()))
            curve["lr"].append(float(sched.get_last_lr()[0]))
            msg = (
                f"step {step + 1}/{steps}  loss {curve['loss'][-1]:.4f}  logit scale {curve['logit_scale'][-1]:.2f}  "
                f"{(step + 1) / el:.2f} steps/s  ETA {(steps - step - 1) / max((step + 1) / el, 1e-9):.0f} s"
            )
            log.info(msg)
    seconds = time.perf_counter() - t0
    model.eval()
    final_scale = float(model.logit_scale.detach().exp().clamp(max=MAX_LOGIT_SCALE))
    acc, per_concept = concept_retrieval(
        model, tokenizer, preprocess, w, logits, final_scale, torch, n=n_eval, seed=seed + 10_000
    )
    n_concepts = len(W.concepts(w))
    metrics = {
        "arch": arch,
        "logits": logits,
        "logit_scale": "learned" if fixed is None else fixed,
        "final_logit_scale": final_scale,
        "final_loss": curve["loss"][-1],
        "steps": steps,
        "batch_size": batch_size,
        "sampling": sampling,
        "seed": seed,
        "seconds": seconds,
        "steps_per_second": steps / seconds,
        "heldout_concept_accuracy": acc,
        "chance_accuracy": 1.0 / n_concepts,
        "heldout_per_concept_accuracy": per_concept,
        "n_concepts": n_concepts,
        "world": w,
        "train_frequencies": W.concept_frequencies(w),
    }
    log.info(
        "trained %s (%s logits, scale %s -> %.2f) in %.0f s: held-out concept accuracy %.3f (chance %.3f)",
        arch,
        logits,
        metrics["logit_scale"],
        final_scale,
        seconds,
        acc,
        metrics["chance_accuracy"],
    )
    return model, TrainResult(metrics=metrics, curve=curve)
