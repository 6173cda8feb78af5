"""Paired comparison of two conditions scored on the same items."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["paired_bootstrap"]


def paired_bootstrap(
    base: Sequence[float] | np.ndarray,
    other: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Mean difference ``other - base`` over paired items with a percentile bootstrap CI.

    Items are resampled with replacement, keeping each item's pair together, so the interval
    reflects only the variation between items (the usual paired bootstrap of NLP/VQA reports).
    Returns ``{"diff", "ci": [lo, hi], "n", "changed", "better", "worse"}`` where ``changed``
    counts items whose score differs between the conditions.
    """
    a = np.asarray(base, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired scores must be two 1-D arrays of one length, got {a.shape} and {b.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    n = len(a)
    d = b - a
    if n == 0:
        return {"diff": 0.0, "ci": [0.0, 0.0], "n": 0, "changed": 0, "better": 0, "worse": 0}
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for i in range(0, n_boot, 256):  # chunks keep memory at 256 x n
        k = min(256, n_boot - i)
        means[i:i + k] = d[rng.integers(0, n, size=(k, n))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return {
        "diff": round(float(d.mean()), 6),
        "ci": [round(float(lo), 6), round(float(hi), 6)],
        "n": int(n),
        "changed": int((d != 0).sum()),
        "better": int((d > 0).sum()),
        "worse": int((d < 0).sum()),
    }
