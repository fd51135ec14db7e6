"""summary.json: every stage's headline numbers for one dataset x model, under stable nested keys,
and — for the paper's own setup (COCO val2017 x ViT-B-32/openai) — each number beside the paper's."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from .outputs import read_json


def flatten(d: Mapping, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists stay values."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def is_paper_setup(dataset_cfg: Mapping, model_cfg: Mapping) -> bool:
    """True for COCO (val2017) embedded by ViT-B-32 with OpenAI weights — the paper's setup."""
    return (dataset_cfg.get("kind") == "coco" and "val2017" in str(dataset_cfg.get("captions", ""))
            and model_cfg.get("arch") == "ViT-B-32" and model_cfg.get("pretrained") == "openai")


def paper_comparison(summary: Mapping) -> list[dict]:
    """Rows {key, paper, run, abs_diff} for every summary key the paper reports."""
    from .paper import PAPER_VALUES

    flat = flatten(summary)
    rows = []
    for key, paper in PAPER_VALUES.items():
        run = flat.get(key)
        diff = None
        if isinstance(paper, (int, float)) and isinstance(run, (int, float)):
            diff = abs(run - paper)
        rows.append({"key": key, "paper": paper, "run": run, "abs_diff": diff})
    return rows


def build_summary(metrics_paths: Mapping[str, str | Path], *, dataset: str, model: str,
                  embeddings_attrs: Mapping, paper_setup: bool) -> dict:
    """Gather each stage's ``summary`` block under the stage's name."""
    stages = {}
    demo = False
    for stage, path in metrics_paths.items():
        m = read_json(path)
        stages[stage] = m.get("summary", {})
        demo = demo or bool(m.get("demo"))
    out = {
        "dataset": dataset, "model": model, "demo": demo,
        "provenance": {k: embeddings_attrs.get(k) for k in (
            "arch", "pretrained", "precision", "device", "open_clip_version", "torch_version",
            "input_checksum", "normalized", "logit_scale", "embed_dim") if k in embeddings_attrs},
    }
    if demo:
        from .outputs import DEMO_NOTE
        out["note"] = DEMO_NOTE
    out.update(stages)
    if paper_setup:
        out["paper_comparison"] = paper_comparison(stages)
    return out
