"""Inclusive arithmetic grids: the α grid of Eq. 9 (stages ``alpha_sweep`` and ``kl_matching``) and the
Sep threshold grid of §4 (:func:`clipgeom.geometry.threshold_grid`)."""

from __future__ import annotations

import math

import numpy as np


def inclusive_grid(start: float, stop: float, step: float, decimals: int = 10) -> np.ndarray:
    """``start, start + step, …`` up to ``stop`` inclusive, rounded to ``decimals`` decimals.

    A point within 1e-9 steps beyond the last whole step still counts as ``stop`` (so -1 … 1 in steps of
    0.1 has 21 points despite 0.1's binary rounding); the rounding makes 0.3 exactly 0.3.
    """
    start, stop, step = float(start), float(stop), float(step)
    if not step > 0:
        raise ValueError(f"grid step must be > 0, got {step}")
    k = int(math.floor((stop - start) / step + 1e-9))
    return np.round(start + step * np.arange(k + 1), decimals)


def alpha_grid(alpha_min: float, alpha_max: float, alpha_step: float, *, include_zero: bool = True) -> np.ndarray:
    """The α values of Eq. 9's shift ``v' = v − α m``: ``alpha_min, alpha_min + alpha_step, …, alpha_max``
    (inclusive, rounded to 10 decimals, no −0.0).

    ``include_zero`` (the alpha_sweep stage: the loss at α = 0, CLIP as trained, is always reported) adds 0
    when the step misses it; kl_matching takes the grid as configured (``include_zero=False``).
    """
    if alpha_step <= 0:
        raise ValueError(f"alpha_step must be > 0, got {alpha_step}")
    if alpha_max < alpha_min:
        raise ValueError(f"alpha_max ({alpha_max}) < alpha_min ({alpha_min})")
    grid = inclusive_grid(alpha_min, alpha_max, alpha_step, 10)
    if include_zero and not np.any(np.isclose(grid, 0.0, atol=1e-12)):
        grid = np.sort(np.append(grid, 0.0))
    grid[np.isclose(grid, 0.0, atol=1e-12)] = 0.0
    return grid
