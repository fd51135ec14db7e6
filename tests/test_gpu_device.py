"""A GPU that was asked for and is not usable fails loudly; `device: auto` says what it chose and why.

The allocation is simulated the way a scheduler makes it: SLURM's and CUDA's environment variables
in the job's environment, on this machine whose torch sees no GPU.
"""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
import torch
import yaml
from workflow_utils import REPO, SNAKEMAKE, snakemake_env

from clipgeom.embed import ModelLoadError, gpu_allocation, resolve_device

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a GPU here: nothing to simulate")


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, None),
        ({"SLURM_GPUS_ON_NODE": "1"}, "SLURM_GPUS_ON_NODE=1"),
        ({"SLURM_GPUS_ON_NODE": "0"}, None),
        ({"SLURM_JOB_GPUS": "2,3"}, "SLURM_JOB_GPUS=2,3"),
        ({"CUDA_VISIBLE_DEVICES": "0"}, "CUDA_VISIBLE_DEVICES=0"),
        ({"CUDA_VISIBLE_DEVICES": ""}, None),
        ({"CUDA_VISIBLE_DEVICES": "-1"}, None),
        ({"CUDA_VISIBLE_DEVICES": "NoDevFiles"}, None),
    ],
)
def test_gpu_allocation_reads_the_schedulers_variables(env, expected):
    assert gpu_allocation(env) == expected


@needs_no_gpu
def test_auto_without_an_allocated_gpu_uses_the_cpu_and_says_why(caplog):
    with caplog.at_level(logging.INFO, logger="clipgeom.embed"):
        assert resolve_device("auto", environ={}) == "cpu"
    assert "device: cpu (device 'auto'" in caplog.text and "no GPU was allocated" in caplog.text
    assert torch.__version__ in caplog.text


@needs_no_gpu
@pytest.mark.parametrize(
    "device, env",
    [
        ("auto", {"SLURM_GPUS_ON_NODE": "1", "CUDA_VISIBLE_DEVICES": "0"}),
        ("cuda", {}),
        ("cuda", {"SLURM_JOB_GPUS": "0"}),
    ],
)
def test_a_gpu_asked_for_and_not_seen_is_an_error_naming_the_torch_build(device, env):
    with pytest.raises(ModelLoadError) as e:
        resolve_device(device, environ=env)
    msg = str(e.value)
    assert f"torch {torch.__version__}" in msg and "sees no CUDA device" in msg
    if torch.version.cuda:
        assert f"built for CUDA {torch.version.cuda}" in msg and "nvidia-smi" in msg and "driver" in msg
    else:
        assert "CPU-only build" in msg
    if device == "auto":
        assert "SLURM_GPUS_ON_NODE=1" in msg


def test_cpu_is_cpu_whatever_the_environment():
    assert resolve_device("cpu", environ={"SLURM_GPUS_ON_NODE": "1"}) == "cpu"


@needs_no_gpu
@pytest.mark.slow
def test_an_embedding_job_given_a_gpu_that_torch_cannot_see_fails_with_the_message_in_its_log(tmp_path):
    cfg = {
        "run_name": "gpu",
        "datasets": {"shapes": {"kind": "demo", "n_images": 8, "image_size": 32}},
        "models": {
            "tiny": {
                "arch": "tiny-clip",
                "model_config": str(REPO / "config/models/tiny-clip.json"),
                "pretrained": "results/models/tiny.pt",
                "init_seed": 0,
                "device": "auto",  # what a cluster config says: take the GPU the job is given
            }
        },
        "embedding": {"shards": 1, "threads": 1, "loader_workers": 0},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    env = snakemake_env() | {"SLURM_GPUS_ON_NODE": "1", "CUDA_VISIBLE_DEVICES": "0"}
    proc = subprocess.run(
        [
            *SNAKEMAKE,
            "-s",
            str(REPO / "Snakefile"),
            "--configfile",
            "c.yaml",
            "--cores",
            "1",
            "results/shapes/tiny/shards/1-of-1.h5",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode != 0
    log = (tmp_path / "results/shapes/tiny/logs/embed_shard_1-of-1.log").read_text()
    assert "this job was given a GPU (SLURM_GPUS_ON_NODE=1)" in log and "sees no CUDA device" in log
    assert not (tmp_path / "results/shapes/tiny/shards/1-of-1.h5").exists()
    assert os.environ.get("SLURM_GPUS_ON_NODE") is None  # the test's own environment was left alone
