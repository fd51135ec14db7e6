"""Vertical SLERP (paper §7, Eq. 12; Fig. 12).

    vSLERP(v_j, v_k, θ, α) = SLERP(v_j − α·m, v_k − α·m, θ) + α·m

m is the modality mean (images).  α = 0 is plain SLERP; α = 1 interpolates on a
sphere around m.  There is no image decoder here: each point of a path is shown
by its nearest real images (cosine) and described by its cosine to m and its norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: below this angle (radians) SLERP falls back to linear interpolation (sin Ω ≈ 0)
_SMALL_ANGLE = 1e-7


def slerp(p: np.ndarray, q: np.ndarray, t) -> np.ndarray:
    """Spherical linear interpolation between vectors ``p`` and ``q`` at fractions ``t`` ∈ [0, 1].

    SLERP(p, q, t) = sin((1−t)Ω)/sin Ω · p + sin(tΩ)/sin Ω · q, Ω = ∠(p, q)
    (applied to the vectors as given, as in unCLIP's interpolation; for unit inputs
    the path stays on the unit sphere).  Returns (len(t), d), or (d,) for scalar t.
    Nearly parallel inputs (Ω < 1e-7) use linear interpolation; exactly opposite
    inputs have no unique great circle and raise ``ValueError``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    scalar = np.ndim(t) == 0
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    npn, nqn = np.linalg.norm(p), np.linalg.norm(q)
    if not (npn > 0 and nqn > 0):
        raise ValueError("SLERP of a zero vector is undefined")
    cos = float(np.clip(p @ q / (npn * nqn), -1.0, 1.0))
    omega = float(np.arccos(cos))
    if omega < _SMALL_ANGLE:
        out = (1.0 - t)[:, None] * p + t[:, None] * q
    elif np.pi - omega < _SMALL_ANGLE:
        raise ValueError("SLERP between opposite vectors is undefined (no unique great circle)")
    else:
        so = np.sin(omega)
        out = (np.sin((1.0 - t) * omega) / so)[:, None] * p + (np.sin(t * omega) / so)[:, None] * q
        # exact endpoints (sin(Ω)/sin(Ω) can be 1 ± 1 ulp)
        out[t == 0.0] = p
        out[t == 1.0] = q
    return out[0] if scalar else out


def vslerp(vj: np.ndarray, vk: np.ndarray, t, alpha: float, m: np.ndarray) -> np.ndarray:
    """Eq. 12: vSLERP(v_j, v_k, θ, α) = SLERP(v_j − α m, v_k − α m, θ) + α m."""
    m = np.asarray(m, dtype=np.float64)
    shift = alpha * m
    return slerp(np.asarray(vj, np.float64) - shift, np.asarray(vk, np.float64) - shift, t) + shift


def path_fractions(steps: int) -> np.ndarray:
    """``steps`` equally spaced θ in [0, 1], endpoints included."""
    if steps < 2:
        raise ValueError(f"a path needs at least 2 steps, got {steps}")
    return np.linspace(0.0, 1.0, steps)


def cosine_to_mean(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    """cos(m, p) for every row p."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    m = np.asarray(m, dtype=np.float64)
    return points @ m / (np.linalg.norm(points, axis=1) * np.linalg.norm(m))


def nearest_rows(points: np.ndarray, bank: np.ndarray, k: int = 1):
    """The ``k`` rows of ``bank`` with the largest cosine to each point: ``(indices, cosines)``, each (P, k)."""
    points = np.atleast_2d(np.asarray(points, dtype=np.float64))
    bank = np.asarray(bank, dtype=np.float64)
    k = int(min(max(k, 1), bank.shape[0]))
    pu = points / np.linalg.norm(points, axis=1, keepdims=True)
    bu = bank / np.linalg.norm(bank, axis=1, keepdims=True)
    sims = pu @ bu.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(sims, idx, axis=1)


def resolve_pairs(
    image_ids: Sequence, pairs: Sequence | None, n_random: int = 3, seed: int = 0
) -> tuple[list[tuple[int, int]], str]:
    """Rows of the configured image-id pairs, or ``n_random`` seeded random pairs when none are configured.

    Ids are matched by their string form (so 139 and "139" both name image 139).
    Returns ``(rows, how)`` with how = "configured" or "random (seed S)".
    An id that does not exist raises ``KeyError`` naming it.
    """
    ids = [str(x) for x in np.asarray(image_ids).tolist()]
    n = len(ids)
    if n < 2:
        raise ValueError(f"vSLERP needs at least 2 images, the dataset has {n}")
    if pairs:
        where = {}
        for row, x in enumerate(ids):
            where.setdefault(x, row)
        rows = []
        for pair in pairs:
            if len(pair) != 2:
                raise ValueError(f"a vSLERP pair must name 2 image ids, got {list(pair)!r}")
            out = []
            for x in pair:
                if str(x) not in where:
                    raise KeyError(f"vslerp: image id {x!r} is not in the dataset's /image/id ({n} images)")
                out.append(where[str(x)])
            rows.append((out[0], out[1]))
        return rows, "configured"
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n_random):
        a, b = rng.choice(n, size=2, replace=False)
        rows.append((int(a), int(b)))
    return rows, f"random (seed {seed})"
