"""The hot row loops of the numba kernels vectorise on AVX2, not only on AVX-512 (compiled for Haswell, not run)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench import AVX2_ENV

AVX2 = {k: AVX2_ENV[k] for k in ("NUMBA_CPU_NAME", "NUMBA_CPU_FEATURES")}


@pytest.fixture(scope="module")
def ymm_counts(tmp_path_factory) -> dict:
    env = {**os.environ, **AVX2, "NUMBA_CACHE_DIR": str(tmp_path_factory.mktemp("numba-haswell"))}
    script = Path(__file__).with_name("vector_check.py")
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_every_hot_loop_uses_ymm_registers(ymm_counts):
    # a scalar loop still touches a few ymm registers (constant splats, a leftover); a vectorised one dozens
    scalar = {name: n for name, n in ymm_counts.items() if n < 24}
    assert not scalar, f"loops left scalar on AVX2 (ymm register uses): {scalar}; all: {ymm_counts}"
    assert len(ymm_counts) == 15
