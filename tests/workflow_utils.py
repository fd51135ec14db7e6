"""Running the real workflow from tests: `snakemake -s <repo>/Snakefile --directory <tmp>`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def snakemake_env() -> dict:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["MPLBACKEND"] = "Agg"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def run_snakemake(
    workdir: Path, configfile: Path | None, *args: str, check: bool = True, timeout: int = 900, **popen
) -> subprocess.CompletedProcess:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "--directory", str(workdir)]
    if configfile is not None:
        cmd += ["--configfile", str(configfile)]
    cmd += list(args)
    proc = subprocess.run(
        cmd, cwd=workdir, env=snakemake_env(), capture_output=True, text=True, timeout=timeout, **popen
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}): {' '.join(cmd)}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-8000:]}"
        )
    return proc


def demo_config(workdir: Path, **overrides) -> Path:
    """config/demo.yaml, with top-level keys or datasets.demo keys overridden, written to workdir."""
    cfg = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    for k, v in overrides.items():
        if k in ("n_images", "captions_per_demo_image", "image_size", "seed"):
            cfg["datasets"]["demo"][k] = v
        else:
            cfg[k] = v
    path = workdir / "demo.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
