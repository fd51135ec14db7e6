"""Config validation fails before any job, naming the key; defaults are filled."""

from __future__ import annotations

import pytest
import yaml
from workflow_utils import REPO, run_snakemake

from clipgeom.config import ConfigError, canonical, load_schema, validate_config

SCHEMA = REPO / "config" / "schema"


def _load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


def test_shipped_configs_validate_and_fill_defaults():
    for name in ("config.yaml", "demo.yaml"):
        cfg = _load(name)
        validate_config(cfg, SCHEMA)
        for d in cfg["datasets"].values():
            assert "on_bad_item" in d and "analyse" in d
        assert set(cfg["stages"]) == set(load_schema(SCHEMA)["properties"]["stages"]["properties"])
    cfg = _load("config.yaml")
    validate_config(cfg, SCHEMA)
    assert cfg["models"]["ViT-B-32-openai"] == {
        "arch": "ViT-B-32",
        "pretrained": "openai",
        "precision": "fp32",
        "device": "auto",
        "model_config": None,
        "init_seed": None,
        "train": None,
        "arm": None,
    }
    assert cfg["datasets"]["coco_val2017"]["captions_per_image"] is None


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["datasets"]["coco_val2017"].update(kind="cocoa"), "datasets.coco_val2017.kind"),
        (
            lambda c: c["datasets"]["coco_val2017"].update(captions_per_image="five"),
            "datasets.coco_val2017.captions_per_image",
        ),
        (lambda c: c["models"]["ViT-B-32-openai"].update(precison="fp16"), "models.ViT-B-32-openai"),
        (lambda c: c["embedding"].update(shards=0), "embedding.shards"),
        (lambda c: c.update(stage={}), "<top level>"),
    ],
)
def test_wrong_key_or_type_names_the_key(mutate, key):
    cfg = _load("config.yaml")
    mutate(cfg)
    with pytest.raises(ConfigError) as e:
        validate_config(cfg, SCHEMA)
    assert f"config key {key!r}" in str(e.value)


def test_every_stage_schema_has_defaults():
    schema = load_schema(SCHEMA)
    stages = schema["properties"]["stages"]["properties"]
    assert stages, "no stage schemas found"
    for name, sub in stages.items():
        for prop, spec in sub.get("properties", {}).items():
            assert "default" in spec, f"stages.{name}.{prop} has no default"
            assert "description" in spec, f"stages.{name}.{prop} has no description"


def test_canonical_sorts_keys_recursively():
    a = canonical({"b": 1, "a": {"d": [{"y": 1, "x": 2}], "c": 0}})
    assert list(a) == ["a", "b"] and list(a["a"]) == ["c", "d"] and list(a["a"]["d"][0]) == ["x", "y"]


def test_bad_config_fails_before_any_job(tmp_path):
    cfg = _load("demo.yaml")
    cfg["models"]["tiny-a"]["precision"] = "fp8"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, path, "-n", check=False)
    assert proc.returncode != 0
    assert "models.tiny-a.precision" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_paper_config_dry_run_lists_download_embed_merge(tmp_path):
    proc = run_snakemake(tmp_path, REPO / "config" / "config.yaml", "-n", "--quiet", "rules")
    out = proc.stdout + proc.stderr
    for rule in ("download_coco_val2017", "prepare_dataset", "embed_shard", "merge_embeddings"):
        assert rule in out, rule


def test_missing_coco_file_without_download_says_where(tmp_path):
    cfg = _load("config.yaml")
    cfg["datasets"]["coco_val2017"]["download"] = False
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, path, "-n", check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "captions not found at 'data/coco/annotations/captions_val2017.json'" in out
    assert "download: true" in out
