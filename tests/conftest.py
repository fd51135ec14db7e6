"""Shared fixtures. The real data lives in ../shared/data beside the checkout (see its README)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from clipgeom.h5io import Embeddings, write_embeddings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CLIPGEOM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found at {SHARED_DATA} (set CLIPGEOM_SHARED_DATA)")
    return SHARED_DATA


def embeddings_from_pairs(image: np.ndarray, text: np.ndarray, **attrs) -> Embeddings:
    """N image rows paired 1:1 with N text rows."""
    n = len(image)
    return Embeddings(
        image=np.asarray(image, np.float32),
        text=np.asarray(text, np.float32),
        image_id=np.arange(n),
        image_file=np.asarray([f"{i:012d}.jpg" for i in range(n)], dtype=object),
        text_id=np.arange(n),
        text_image_index=np.arange(n),
        caption=np.asarray([f"caption {i}" for i in range(n)], dtype=object),
        attrs={"model": "test", "pretrained": "none", "logit_scale": 100.0, **attrs},
    )


@pytest.fixture(scope="session")
def clip500(shared_data) -> Embeddings:
    """500 real CLIP ViT-B/16 COCO pairs (unit-norm rows), image row i paired with text row i."""
    arr = np.load(shared_data / "clip-vitb16-coco500" / "features_clip.npy")
    return embeddings_from_pairs(arr[0], arr[1], model="ViT-B-16", pretrained="openai")


@pytest.fixture(scope="session")
def clip500_h5(clip500, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip500") / "embeddings.h5"
    write_embeddings(path, clip500)
    return path


@pytest.fixture
def write_h5(tmp_path):
    """write_h5(image, text, **attrs) -> path of an embeddings.h5 with 1:1 pairs."""

    def _write(image, text, name="embeddings.h5", **attrs):
        path = tmp_path / name
        write_embeddings(path, embeddings_from_pairs(image, text, **attrs))
        return path

    return _write
