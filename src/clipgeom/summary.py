"""summary.json: every stage's headline numbers for one dataset x model, under stable nested keys,
and every claim of the papers judged on them (``claims``, ``paper_comparison``; see :mod:`clipgeom.paper`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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
    return (
        dataset_cfg.get("kind") == "coco"
        and "val2017" in str(dataset_cfg.get("captions", ""))
        and model_cfg.get("arch") == "ViT-B-32"
        and model_cfg.get("pretrained") == "openai"
    )


def setup_name(dataset: str, model: str, attrs: Mapping) -> str:
    """``dataset × model (arch/pretrained)`` for the comparability notes."""
    parts = [str(attrs[k]) for k in ("arch", "pretrained") if attrs.get(k)]
    tail = f" ({'/'.join(parts)})" if parts else ""
    return f"{dataset} × {model}{tail}"


def paper_comparison(summary: Mapping, *, paper_setup: bool, normalized: bool | None, setup: str) -> list[dict]:
    """The rows of paper_vs_run.csv: every claim of the papers judged on this summary (see clipgeom.paper)."""
    from .paper import evaluate_claims

    return evaluate_claims(flatten(summary), paper_setup=paper_setup, normalized=normalized, setup=setup)


def build_summary(
    metrics_paths: Mapping[str, str | Path], *, dataset: str, model: str, embeddings_attrs: Mapping, paper_setup: bool
) -> dict:
    """Gather each stage's ``summary`` block under the stage's name."""
    stages = {}
    demo = False
    for stage, path in metrics_paths.items():
        m = read_json(path)
        stages[stage] = m.get("summary", {})
        demo = demo or bool(m.get("demo"))
    out = {
        "dataset": dataset,
        "model": model,
        "demo": demo,
        "provenance": {
            k: embeddings_attrs.get(k)
            for k in (
                "arch",
                "pretrained",
                "precision",
                "device",
                "open_clip_version",
                "torch_version",
                "input_checksum",
                "normalized",
                "logit_scale",
                "embed_dim",
            )
            if k in embeddings_attrs
        },
    }
    if demo:
        from .outputs import DEMO_NOTE

        out["note"] = DEMO_NOTE
    out.update(stages)
    norm = embeddings_attrs.get("normalized")
    rows = paper_comparison(
        stages,
        paper_setup=paper_setup,
        normalized=None if norm is None else bool(norm),
        setup=setup_name(dataset, model, embeddings_attrs),
    )
    out["paper_setup"] = bool(paper_setup)
    # qualitative claims by id: holds / fails / not applicable (the cross-model table gets one column each)
    out["claims"] = {r["claim"]: r["status"] for r in rows if r["kind"] == "qualitative"}
    out["paper_comparison"] = rows
    return out
