"""Log-spaced evaluation lags: long continuations evaluated at few, well-spread points (SPEC section 5b)."""

from __future__ import annotations

import numpy as np


def log_spaced(last: int, n: int) -> list[int]:
    """About n integer lags log-spaced over 1..last (rounded, deduplicated, last included); [] for n = 0."""
    if n <= 0 or last < 1:
        return []
    points = np.unique(np.rint(np.geomspace(1, last, num=n)).astype(int))
    return sorted({int(p) for p in points} | {last})
