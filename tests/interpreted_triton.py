"""Triton under its CPU interpreter for a test module: import this before fastaug's Triton modules.

Triton's own jit helpers are built for the interpreter only if ``TRITON_INTERPRET=1`` when triton is first imported:
set it for that import (skipping the module without Triton), then put the environment back; the ``interpret``
fixture (``from interpreted_triton import interpret``) sets it again for each test, and the kernels pick
interpreted or compiled copies per call (``gpu`` tests switch it off).
"""

from __future__ import annotations

import os

import pytest

_PREVIOUS = os.environ.get("TRITON_INTERPRET")
os.environ["TRITON_INTERPRET"] = "1"
try:
    pytest.importorskip("triton")
finally:
    if _PREVIOUS is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _PREVIOUS


@pytest.fixture(autouse=True)
def interpret(monkeypatch):
    """Run the Triton kernels in the CPU interpreter."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
