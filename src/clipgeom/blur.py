"""The Fig. 7 simulation (paper §6): why embeddings near the mean "blur".

``n`` vectors in ``dim`` dimensions with i.i.d. N(0, 1) entries, once centred at the origin and once
centred at ``centre`` (default ``(10, 5, 5, 0, ..., 0)``). For each setting, with ``m`` the empirical
mean of the vectors and ``v_far = argmin_j cos(m, v_j)`` the vector least similar to the mean, the two
histograms of Fig. 7 are ``cos(m, v_j)`` over all j and ``cos(v_far, v_j)`` over all ``j != far``
(``v_far`` itself, whose cosine is 1, is left out). Both settings use the same Gaussian draw, so they
differ only by the offset. At the origin the two histograms look alike; off-centre the similarity to
the mean is much larger than the similarity to ``v_far``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SETTINGS = ("origin", "offset")


def centre_vector(centre, dim: int) -> np.ndarray:
    """The leading coordinates ``centre`` padded with zeros to length ``dim``."""
    c = np.asarray(list(centre), np.float64).ravel()
    if c.size > dim:
        raise ValueError(f"centre has {c.size} coordinates but dim is {dim}")
    out = np.zeros(dim)
    out[: c.size] = c
    return out


def cosine_to(u: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """``cos(u, v_j)`` for every row ``v_j`` of ``vectors``."""
    u = np.asarray(u, np.float64)
    v = np.asarray(vectors, np.float64)
    return (v @ u) / (np.linalg.norm(v, axis=1) * np.linalg.norm(u))


@dataclass
class BlurSetting:
    """One panel of Fig. 7."""

    name: str
    centre: np.ndarray
    vectors: np.ndarray
    mean: np.ndarray
    cos_mean: np.ndarray  # cos(m, v_j), all j
    far_index: int  # argmin_j cos(m, v_j)
    cos_far: np.ndarray  # cos(v_far, v_j), j != far

    def stats(self) -> dict:
        return {q: _describe(getattr(self, q)) for q in ("cos_mean", "cos_far")} | {
            "far_index": int(self.far_index),
            "mean_norm": float(np.linalg.norm(self.mean)),
            "centre_norm": float(np.linalg.norm(self.centre)),
        }


def _describe(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
        "median": float(np.median(x)),
        "min": float(x.min()),
        "max": float(x.max()),
        "n": int(x.size),
    }


def blur_setting(vectors: np.ndarray, name: str = "", centre: np.ndarray | None = None) -> BlurSetting:
    """Fig. 7 for one set of vectors: cosines to the empirical mean and to the vector least similar to it."""
    v = np.asarray(vectors, np.float64)
    m = v.mean(axis=0)
    cm = cosine_to(m, v)
    far = int(np.argmin(cm))
    keep = np.arange(len(v)) != far
    cf = cosine_to(v[far], v[keep])
    return BlurSetting(
        name, np.zeros(v.shape[1]) if centre is None else np.asarray(centre, np.float64), v, m, cm, far, cf
    )


def blur_simulation(n: int = 1000, dim: int = 512, centre=(10.0, 5.0, 5.0), seed: int = 0) -> dict:
    """Fig. 7: ``{"origin": BlurSetting, "offset": BlurSetting}`` from one seeded N(0, I) draw of ``n x dim``."""
    if n < 3:
        raise ValueError(f"n must be >= 3, got {n}")
    c = centre_vector(centre, dim)
    z = np.random.default_rng(seed).standard_normal((n, dim))
    return {"origin": blur_setting(z, "origin", np.zeros(dim)), "offset": blur_setting(z + c, "offset", c)}


def blur_summary(res: dict) -> dict:
    """Headline numbers: per setting, mean and spread of both histograms and the gap between their means."""
    out = {}
    for name, s in res.items():
        st = s.stats()
        out[name] = {
            "cos_mean": {"mean": st["cos_mean"]["mean"], "std": st["cos_mean"]["std"]},
            "cos_far": {"mean": st["cos_far"]["mean"], "std": st["cos_far"]["std"]},
            "mean_gap": st["cos_mean"]["mean"] - st["cos_far"]["mean"],
        }
    return out
