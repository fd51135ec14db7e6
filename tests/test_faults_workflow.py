"""Fault cases at the workflow level: config errors before any job, errors in the failed job's log,
changed inputs re-embedded, corrupt outputs named and removed, leftovers cleaned, concurrent runs.

The table CONFIG_CASES runs through ``check_config`` directly (the function common.smk calls before
any job) and, for a few rows, through a real ``snakemake -n`` as well. docs/faults.md lists every case.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from workflow_utils import REPO, SNAKEMAKE, run_snakemake, snakemake_env

from clipgeom.config import ConfigError, check_config, open_clip_architectures, validate_config
from clipgeom.h5io import read_embeddings

SCHEMA = REPO / "config" / "schema"
TINY = {
    "arch": "tiny-clip",
    "model_config": str(REPO / "config" / "models" / "tiny-clip.json"),
    "pretrained": "results/models/tiny.pt",
    "init_seed": 0,
    "device": "cpu",
}


def _base() -> dict:
    return {
        "datasets": {
            "pics": {"kind": "folder", "captions": "captions.csv", "images": "images"},
            "gen": {"kind": "images", "images": "images", "reference": "pics"},
        },
        "models": {"tiny": dict(TINY)},
    }


def _set(path: str, value):
    def mutate(cfg):
        *head, last = path.split(".")
        node = cfg
        for k in head:
            node = node.setdefault(k, {})
        if value is _DELETE:
            node.pop(last)
        else:
            node[last] = value

    return mutate


_DELETE = object()

# (id, mutation of a valid config, regex the error must match: it names the key)
CONFIG_CASES = [
    (
        "dataset-models-dangling",
        _set("datasets.pics.models", ["nope"]),
        r"datasets\.pics\.models: 'nope' is not a model",
    ),
    (
        "reference-dangling",
        _set("datasets.gen.reference", "nope"),
        r"datasets\.gen\.reference: 'nope' is not a dataset",
    ),
    ("reference-self", _set("datasets.pics.reference", "pics"), r"datasets\.pics\.reference: .*itself"),
    (
        "reference-external",
        lambda c: c["datasets"].update({"gen2": {"kind": "captions", "captions": "c.txt", "reference": "gen"}}),
        r"datasets\.gen2\.reference: 'gen' is an external set",
    ),
    (
        "folder-without-captions",
        _set("datasets.pics.captions", _DELETE),
        r"datasets\.pics: kind 'folder' needs 'captions'",
    ),
    ("folder-without-images", _set("datasets.pics.images", _DELETE), r"datasets\.pics: kind 'folder' needs 'images'"),
    (
        "coco-without-images",
        lambda c: c["datasets"].update({"c": {"kind": "coco", "captions": "x.json"}}),
        r"datasets\.c: kind 'coco' needs 'images'",
    ),
    (
        "embeddings-without-path",
        lambda c: c["datasets"].update({"e": {"kind": "embeddings"}}),
        r"datasets\.e: kind 'embeddings' needs 'path'",
    ),
    (
        "captions-without-captions",
        lambda c: c["datasets"].update({"t": {"kind": "captions", "reference": "pics"}}),
        r"datasets\.t: kind 'captions' needs 'captions'",
    ),
    ("model-without-weights", _set("models.tiny.pretrained", None), r"models\.tiny\.pretrained: no weights given"),
    (
        "model-seed-without-file",
        lambda c: c["models"]["tiny"].update(pretrained=None, init_seed=3),
        r"models\.tiny\.pretrained: no weights given",
    ),
    ("fp16-on-cpu", _set("models.tiny.precision", "fp16"), r"models\.tiny\.precision: fp16 needs a GPU"),
    (
        "unknown-arch",
        lambda c: c["models"].update({"big": {"arch": "ViT-B-33", "pretrained": "openai"}}),
        r"models\.big\.arch: open_clip has no architecture 'ViT-B-33' \(similar: .*ViT-B-32",
    ),
    ("model-config-name-mismatch", _set("models.tiny.arch", "tiny-clap"), r"models\.tiny\.model_config: .*'tiny-clip'"),
    (
        "alpha-grid-reversed",
        _set("stages.alpha_sweep", {"alpha_min": 1.0, "alpha_max": -1.0}),
        r"stages\.alpha_sweep\.alpha_min: 1\.0 is above alpha_max -1\.0",
    ),
    (
        "kl-grid-reversed",
        _set("stages.kl_matching", {"alpha_min": 0.5, "alpha_max": 0.0}),
        r"stages\.kl_matching\.alpha_min",
    ),
    (
        "no-models-for-a-model-kind",
        _set("models", {}),
        r"datasets\.pics: kind 'folder' is embedded by a model, but models: is empty",
    ),
]


@pytest.fixture(scope="module")
def archs():
    names = open_clip_architectures()
    assert {"ViT-B-32", "RN50", "ViT-L-14"} <= names  # read from open_clip's own model_configs folder
    return names


def test_valid_base_config_passes(archs):
    cfg = _base()
    validate_config(cfg, SCHEMA)
    check_config(cfg, known_archs=archs, n_shards=4)


@pytest.mark.parametrize("case,mutate,pattern", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_error_names_the_key(case, mutate, pattern, archs):
    cfg = _base()
    mutate(cfg)
    validate_config(cfg, SCHEMA)
    with pytest.raises(ConfigError, match=pattern):
        check_config(cfg, known_archs=archs, n_shards=4)


def test_imports_only_need_no_models_block(tmp_path, shared_data):
    """A config that only imports embeddings: no models:, and the whole DAG plans (was a KeyError)."""
    arr = np.load(shared_data / "clip-vitb16-coco500" / "features_clip.npy")[:, :50]
    np.save(tmp_path / "pairs.npy", arr)
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"datasets": {"mine": {"kind": "embeddings", "path": "pairs.npy"}}})
    )
    proc = run_snakemake(tmp_path, tmp_path / "c.yaml", "-n")
    out = proc.stdout + proc.stderr
    for rule in ("import_embeddings", "separability", "alpha_sweep", "summary"):
        assert rule in out, (rule, out[-2000:])


@pytest.mark.parametrize(
    "mutate,args,pattern",
    [
        (lambda c: None, ("--set-scatter", "split=0"), r"embedding shards .*: 0; need at least 1"),
        (_set("datasets.gen.reference", "nope"), (), r"datasets\.gen\.reference: 'nope' is not a dataset"),
        (_set("models.tiny.pretrained", None), (), r"models\.tiny\.pretrained: no weights given"),
    ],
    ids=["split-0", "reference-dangling", "no-weights"],
)
def test_config_errors_stop_snakemake_before_any_job(tmp_path, mutate, args, pattern):
    cfg = _base()
    mutate(cfg)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    proc = run_snakemake(tmp_path, tmp_path / "c.yaml", "-n", *args, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert re.search(pattern, out), out[-3000:]
    assert not (tmp_path / "results").exists()


# ------------------------------------------------------------------ real runs on a small folder dataset
def _folder_dataset(root: Path, n: int = 6) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    rows = ["image,caption"]
    for i in range(n):
        Image.new("RGB", (32, 32), (40 * i % 256, 90, 200 - 20 * i)).save(root / "images" / f"p{i}.png")
        rows.append(f"p{i}.png,picture {i}")
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    cfg = {
        "datasets": {"pics": {"kind": "folder", "captions": "captions.csv", "images": "images", "analyse": False}},
        "models": {"tiny": dict(TINY)},
        "embedding": {"shards": 2, "loader_workers": 0},
    }
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    return root / "c.yaml"


TARGET = "results/pics/tiny/embeddings.h5"


@pytest.mark.slow
def test_failed_job_log_holds_its_error(tmp_path):
    cfg = _folder_dataset(tmp_path)
    (tmp_path / "images" / "p3.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    proc = run_snakemake(tmp_path, cfg, "--cores", "1", TARGET, check=False)
    assert proc.returncode != 0
    logs = sorted((tmp_path / "results" / "pics" / "tiny" / "logs").glob("embed_shard_*.log"))
    text = "\n".join(p.read_text() for p in logs)
    assert "corrupt or truncated image" in text and "p3.png" in text, text[-3000:]
    assert "Traceback" in text or "traceback" in text
    assert not (tmp_path / TARGET).exists()


@pytest.mark.slow
def test_image_replaced_in_place_is_reembedded(tmp_path):
    cfg = _folder_dataset(tmp_path)
    run_snakemake(tmp_path, cfg, "--cores", "2", TARGET)
    before = read_embeddings(tmp_path / TARGET)
    time.sleep(0.05)
    Image.new("RGB", (32, 32), (255, 255, 0)).save(tmp_path / "images" / "p4.png")  # same name, new bytes
    dry = run_snakemake(tmp_path, cfg, "-n", TARGET, "--quiet", "rules")
    assert "prepare_dataset" in dry.stdout + dry.stderr
    run_snakemake(tmp_path, cfg, "--cores", "2", TARGET)
    after = read_embeddings(tmp_path / TARGET)
    row = list(after.image_file).index("p4.png")
    changed = [i for i in range(len(after.image)) if not np.array_equal(after.image[i], before.image[i])]
    assert changed == [row]
    manifest = json.loads((tmp_path / "results" / "pics" / "manifest.json").read_text())
    import hashlib

    sha = hashlib.sha256((tmp_path / "images" / "p4.png").read_bytes()).hexdigest()
    assert manifest["images"][row]["sha256"] == sha
    # nothing changed since: nothing to do
    again = run_snakemake(tmp_path, cfg, "-n", TARGET)
    assert "Nothing to be done" in again.stdout + again.stderr


@pytest.mark.slow
def test_truncated_embeddings_file_is_named_removed_and_rebuilt(tmp_path, shared_data):
    arr = np.load(shared_data / "clip-vitb16-coco500" / "features_clip.npy")[:, :60]
    np.save(tmp_path / "pairs.npy", arr)
    (tmp_path / "c.yaml").write_text(
        yaml.safe_dump({"datasets": {"mine": {"kind": "embeddings", "path": "pairs.npy"}}})
    )
    h5 = tmp_path / "results/mine/imported/embeddings.h5"
    run_snakemake(tmp_path, tmp_path / "c.yaml", "--cores", "1", str(h5.relative_to(tmp_path)))
    data, st = h5.read_bytes(), h5.stat()
    h5.write_bytes(data[: len(data) // 3])
    os.utime(h5, ns=(st.st_atime_ns, st.st_mtime_ns))  # damaged, but its time says nothing changed
    target = "results/mine/imported/thin_shell/metrics.json"
    proc = run_snakemake(tmp_path, tmp_path / "c.yaml", "--cores", "1", target, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/mine/imported/logs/thin_shell.log").read_text()
    assert "embeddings.h5" in log and "removed the unreadable file" in log, log[-3000:]
    assert not h5.exists()
    assert (tmp_path / "pairs.npy").exists()  # the user's own file is never touched
    run_snakemake(tmp_path, tmp_path / "c.yaml", "--cores", "1", target)
    assert read_embeddings(h5).image.shape == (60, 512)


@pytest.mark.slow
def test_stale_temporary_files_are_removed_by_the_next_write(tmp_path):
    cfg = _folder_dataset(tmp_path)
    out = tmp_path / "results/pics/tiny"
    out.mkdir(parents=True)
    (out / ".embeddings.h5.tmp-99999999").write_bytes(b"left by a killed process")
    (out / "shards").mkdir()
    (out / "shards" / ".1-of-2.h5.tmp-99999998").write_bytes(b"left by a killed process")
    run_snakemake(tmp_path, cfg, "--cores", "2", TARGET)
    assert not list(out.rglob("*.tmp-*"))


@pytest.mark.slow
def test_second_run_in_the_same_directory_is_refused(tmp_path):
    cfg = _folder_dataset(tmp_path, n=24)
    cmd = [
        *SNAKEMAKE,
        "-s",
        str(REPO / "Snakefile"),
        "--directory",
        str(tmp_path),
        "--configfile",
        str(cfg),
        "--cores",
        "1",
        TARGET,
    ]
    first = subprocess.Popen(
        cmd, cwd=tmp_path, env=snakemake_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        locks = tmp_path / ".snakemake" / "locks"
        deadline = time.time() + 120
        while time.time() < deadline and not (locks.is_dir() and any(locks.iterdir())):
            time.sleep(0.2)
        assert locks.is_dir() and any(locks.iterdir()), "first run never took its lock"
        second = run_snakemake(tmp_path, cfg, "--cores", "1", TARGET, check=False)
        assert second.returncode != 0
        assert "cannot be locked" in second.stdout + second.stderr
    finally:
        assert first.wait(timeout=600) == 0
    assert read_embeddings(tmp_path / TARGET).image.shape[0] == 24


@pytest.mark.slow
def test_image_changed_after_the_manifest_is_refused_at_merge(tmp_path):
    """Even when the manifest is not rebuilt (params trigger off), bytes that differ from the
    manifest's sha256 never reach embeddings.h5."""
    cfg = _folder_dataset(tmp_path)
    run_snakemake(tmp_path, cfg, "--cores", "1", "results/pics/manifest.json")
    Image.new("RGB", (32, 32), (0, 255, 255)).save(tmp_path / "images" / "p2.png")
    proc = run_snakemake(tmp_path, cfg, "--rerun-triggers", "mtime", "input", "--cores", "1", TARGET, check=False)
    assert proc.returncode != 0
    log = (tmp_path / "results/pics/tiny/logs/merge_embeddings.log").read_text()
    assert "image p2.png (id 'p2.png') changed after the manifest was built" in log, log[-2000:]
    assert not (tmp_path / TARGET).exists()


@pytest.mark.slow
def test_every_row_identical_is_one_clear_error(tmp_path):
    rng = np.random.default_rng(0)
    v, t = rng.normal(size=(1, 64)), rng.normal(size=(1, 64))
    np.savez(tmp_path / "same.npz", image=np.repeat(v, 40, 0), text=np.repeat(t, 40, 0))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"datasets": {"same": {"kind": "embeddings", "path": "same.npz"}}}))
    stages = ("separability", "covariance", "kl_matching", "vslerp")  # each crashed in plotting or maths before
    targets = [f"results/same/imported/{s}/metrics.json" for s in stages]
    proc = run_snakemake(tmp_path, tmp_path / "c.yaml", "--cores", "2", "-k", *targets, check=False)
    assert proc.returncode != 0
    for s in stages:
        log = (tmp_path / f"results/same/imported/logs/{s}.log").read_text()
        assert f"every one of the 40 image rows is the same vector, so {s} has nothing to measure" in log, log[-1500:]
        assert "embeddings.h5" in log
