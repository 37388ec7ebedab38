"""Pipelines saved as JSON: every transform and policy, a Compose of them, versioned.

``to_json(pipeline, path)`` writes ``{"format": "fastaug.pipeline", "version": 1, "pipeline": node}`` where a node is
``{"type": "Compose", "seed", "backend", "straight_through", "transforms": [node, ...]}``, a transform or policy
``{"type": <class name>, "args": {<constructor argument>: value}}`` (the arguments as the object keeps them), or a
found / fitted policy ``{"type": "MarkovPolicy" | "SubPolicies", "policy": <its own JSON document>}``. ``load(path)``
reads that back, and also a MarkovPolicy or SubPolicies JSON written by their own ``to_json``. Values: numbers,
strings, lists; a ``torch.dtype`` as ``{"dtype": "float32"}``.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch

FORMAT, VERSION = "fastaug.pipeline", 1
_KEPT_AS = {("RandomFog", "fog_coef_range"): "density_range"}  # an argument the object keeps under another name
_NO_EFFECT = ("expand", "inplace")  # arguments fastaug accepts only at their default (torchvision's names)


def _classes() -> dict[str, type]:
    import fastaug
    from fastaug import transforms as T

    found = {name: obj for name, obj in vars(T).items() if inspect.isclass(obj) and issubclass(obj, T.Transform) and obj is not T.Transform}
    for name in ("RandAugment", "TrivialAugmentWide", "AutoAugment", "MarkovPolicy", "SubPolicies"):
        found[name] = getattr(fastaug, name)
    return found


def _value(v):
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_value(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _value(x) for k, x in v.items()}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"cannot write {type(v).__name__} {v!r} as JSON")


def _unvalue(v):
    if isinstance(v, dict) and set(v) == {"dtype"}:
        return getattr(torch, v["dtype"])
    if isinstance(v, list):
        return [_unvalue(x) for x in v]
    return v


def to_dict(obj) -> dict:
    """A pipeline node (see the module docstring)."""
    import fastaug

    if isinstance(obj, fastaug.Compose):
        return {"type": "Compose", "seed": obj.seed, "backend": obj.backend, "straight_through": obj.straight_through,
                "transforms": [to_dict(t) for t in obj.transforms]}  # fmt: skip
    name = type(obj).__name__
    if _classes().get(name) is not type(obj):
        raise TypeError(f"cannot write {name} as JSON: not a fastaug transform or policy")
    if hasattr(obj, "to_dict"):
        return {"type": name, "policy": obj.to_dict()}
    args = {}
    for p in list(inspect.signature(type(obj).__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        attr = _KEPT_AS.get((name, p.name), p.name)
        if not hasattr(obj, attr):
            if p.name in _NO_EFFECT:
                continue
            raise TypeError(f"cannot write {name} as JSON: it does not keep its argument {p.name!r}")
        args[p.name] = _value(getattr(obj, attr))
    return {"type": name, "args": args}


def from_dict(node: dict):
    import fastaug

    if not isinstance(node, dict) or "type" not in node:
        raise ValueError(f"a pipeline node must be an object with a 'type', got {node!r}")
    if node["type"] == "Compose":
        return fastaug.Compose([from_dict(t) for t in node["transforms"]], seed=node.get("seed", 0), backend=node.get("backend", "auto"),
                               straight_through=node.get("straight_through", False))  # fmt: skip
    cls = _classes().get(node["type"])
    if cls is None:
        raise ValueError(f"unknown transform or policy {node['type']!r}")
    if "policy" in node:
        return cls.from_dict(node["policy"])
    return cls(**{k: _unvalue(v) for k, v in node.get("args", {}).items()})


def to_json(pipeline, path) -> Path:
    """Write a Compose, transform or policy as versioned JSON, atomically."""
    from fastaug.atomic import write_text

    doc = {"format": FORMAT, "version": VERSION, "pipeline": to_dict(pipeline)}
    return write_text(path, json.dumps(doc, indent=1) + "\n")


def load(path):
    """A pipeline written by :func:`to_json`, or a MarkovPolicy / SubPolicies JSON."""
    import fastaug

    with open(path) as f:
        doc = json.load(f)
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a fastaug pipeline or policy JSON")
    fmt = doc.get("format")
    if fmt == FORMAT:
        if doc.get("version") != VERSION:
            raise ValueError(f"{path}: {FORMAT} version {doc.get('version')!r} is not supported (this fastaug reads {VERSION})")
        return from_dict(doc["pipeline"])
    for cls in (fastaug.MarkovPolicy, fastaug.SubPolicies):
        try:
            return cls.from_dict(doc)
        except ValueError as e:
            if "not a" not in str(e):
                raise ValueError(f"{path}: {e}") from None
    raise ValueError(f"{path}: not a fastaug pipeline or policy JSON (format {fmt!r})")
