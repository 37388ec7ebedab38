"""pyproject.toml lists every package of the source tree (a non-editable install ships only those)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    line = re.search(r"^packages\s*=\s*(\[.*\])\s*$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert line, "pyproject.toml has no one-line packages = [...] list"
    listed = set(ast.literal_eval(line.group(1)))
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "fastaug").rglob("__init__.py")}
    kernels = (p.parent.relative_to(ROOT / "kernels").parts for p in (ROOT / "kernels").rglob("__init__.py"))
    found |= {".".join(("fastaug", "kernels", *parts)) for parts in kernels}
    assert found <= listed, f"missing from pyproject.toml packages: {sorted(found - listed)}"


def test_triton_lower_bound_is_the_version_ci_compiles_with():
    """pyproject's oldest admitted Triton is the one whose ahead-of-time compile CI runs (``.ci/run``)."""
    from packaging.version import Version

    bounds = {Version(v) for v in re.findall(r"triton>=([0-9.]+)", (ROOT / "pyproject.toml").read_text())}
    tested = {Version(v) for v in re.findall(r"triton==([0-9.]+)", (ROOT / ".ci" / "run").read_text())}
    assert bounds and tested, "no triton lower bound in pyproject.toml or no pinned triton in .ci/run"
    assert bounds == tested, f"pyproject.toml admits triton >= {sorted(map(str, bounds))}, CI compiles with {sorted(map(str, tested))}"
