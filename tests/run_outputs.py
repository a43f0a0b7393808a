"""same_rows(): two runs' per-text results agree (shared by the stream and engine tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from parity.metrics import METRICS


def same_rows(mine: Path, theirs: Path) -> None:
    """Two results.parquet files hold the same rows: every column but the metrics exactly,
    the metrics within 1e-6 (another batching moves float32 vectors by ~1e-8, the noise floor)."""
    a, b = pd.read_parquet(mine), pd.read_parquet(theirs)
    exact = [c for c in b.columns if c not in METRICS]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    for metric in METRICS:
        np.testing.assert_allclose(a[metric].to_numpy(), b[metric].to_numpy(), rtol=0, atol=1e-6)
