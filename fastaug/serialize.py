"""Pipelines saved as JSON: every transform and policy, a Compose of them, versioned.

``to_json(pipeline, path)`` writes ``{"format": "fastaug.pipeline", "version": 1, "pipeline": node}`` where a node is
``{"type": "Compose", "seed", "backend", "straight_through", "transforms": [node, ...]}``, a transform or policy
``{"type": <class name>, "args": {<constructor argument>: value}}`` (the arguments as the object keeps them), or a
found / fitted policy ``{"type": "MarkovPolicy" | "SubPolicies", "policy": <its own JSON document>}``. ``load(path)``
reads that back, and also a MarkovPolicy or SubPolicies JSON written by their own ``to_json``. Values: numbers,
strings, lists, objects; a ``torch.dtype`` as ``{"dtype": "float32"}``; a transform argument of a transform (the
converter's ``WithProbability``) as ``{"transform": node}``.

What ``fastaug.from_torchvision`` / ``from_albumentations`` produce is written too: their own samplers
(``WithProbability``, ``AlbumentationsPosterize``, ``AlbumentationsSolarize``, ``AlbumentationsAffine``) as transforms,
and a :class:`fastaug.Pipeline` (``fallback=True``) as ``{"type": "Pipeline", "seed", "stages": [node, ...]}`` whose
fallback stages are ``{"type": "Fallback", "library", "position", "op"}``: an albumentations op as albumentations'
own ``to_dict`` document, a torchvision v2 op as ``{"class": <name in torchvision.transforms.v2>, "args": {...}}``
(its constructor arguments as it keeps them; one that does not keep them, or does not rebuild to the same ``repr``,
raises ``TypeError`` when written).
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
    from fastaug import convert

    for name in _CONVERTER_SAMPLERS:  # what from_torchvision / from_albumentations produce besides the above
        found[name] = getattr(convert, name)
    return found


_CONVERTER_SAMPLERS = ("WithProbability", "AlbumentationsPosterize", "AlbumentationsSolarize", "AlbumentationsAffine")


def _is_node(v) -> bool:
    return _classes().get(type(v).__name__) is type(v)


def _value(v):
    if isinstance(v, torch.dtype):
        return {"dtype": str(v).removeprefix("torch.")}
    if isinstance(v, torch.Tensor):
        return v.tolist()
    if _is_node(v):
        return {"transform": to_dict(v)}
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
    if isinstance(v, dict) and set(v) == {"transform"}:
        return from_dict(v["transform"])
    if isinstance(v, dict):
        return {k: _unvalue(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_unvalue(x) for x in v]
    return v


def to_dict(obj) -> dict:
    """A pipeline node (see the module docstring)."""
    import fastaug

    if isinstance(obj, fastaug.Compose):
        return {"type": "Compose", "seed": obj.seed, "backend": obj.backend, "straight_through": obj.straight_through,
                "transforms": [to_dict(t) for t in obj.transforms]}  # fmt: skip
    if isinstance(obj, fastaug.Pipeline):
        stages = [to_dict(s) if isinstance(s, fastaug.Compose) else _fallback_dict(s) for s in obj.stages]
        return {"type": "Pipeline", "seed": obj.seed, "stages": stages}
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
    if node["type"] == "Pipeline":
        stages = [_fallback_from_dict(s) if s.get("type") == "Fallback" else from_dict(s) for s in node["stages"]]
        return fastaug.Pipeline(stages, seed=node.get("seed", 0))
    cls = _classes().get(node["type"])
    if cls is None:
        raise ValueError(f"unknown transform or policy {node['type']!r}")
    if "policy" in node:
        return cls.from_dict(node["policy"])
    return cls(**{k: _unvalue(v) for k, v in node.get("args", {}).items()})


# ----------------------------------------------------------------------------- fallback ops of a converted Pipeline


def _tv_module():
    from torchvision.transforms import v2

    return v2


def _tv_value(v):
    import enum

    v2 = _tv_module()
    if isinstance(v, enum.Enum):
        return {"enum": type(v).__name__, "value": v.value}
    if isinstance(v, v2.Transform):
        return {"torchvision": _tv_op_dict(v)}
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            raise TypeError(f"cannot write the torchvision argument {v!r} as JSON (keys other than strings)")
        return {"dict": {k: _tv_value(x) for k, x in v.items()}}
    if isinstance(v, (list, tuple)):
        return {"tuple" if isinstance(v, tuple) else "list": [_tv_value(x) for x in v]}
    return _value(v)


def _tv_unvalue(v):
    v2 = _tv_module()
    if isinstance(v, dict) and set(v) == {"enum", "value"}:
        return getattr(v2, v["enum"])(v["value"])
    if isinstance(v, dict) and set(v) == {"torchvision"}:
        return _tv_op_from_dict(v["torchvision"])
    if isinstance(v, dict) and set(v) == {"dict"}:
        return {k: _tv_unvalue(x) for k, x in v["dict"].items()}
    if isinstance(v, dict) and set(v) in ({"tuple"}, {"list"}):
        items = [_tv_unvalue(x) for x in next(iter(v.values()))]
        return tuple(items) if "tuple" in v else items
    return _unvalue(v)


def _tv_op_dict(op) -> dict:
    v2, name = _tv_module(), type(op).__name__
    if getattr(v2, name, None) is not type(op):
        raise TypeError(f"cannot write the torchvision op {name} as JSON: not a class of torchvision.transforms.v2")
    args = {}
    for p in list(inspect.signature(type(op).__init__).parameters.values())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if not hasattr(op, p.name):
            raise TypeError(f"cannot write the torchvision op {name} as JSON: it does not keep its argument {p.name!r}")
        args[p.name] = _tv_value(getattr(op, p.name))
    node = {"class": name, "args": args}
    if repr(_tv_op_from_dict(json.loads(json.dumps(node)))) != repr(op):
        raise TypeError(f"cannot write the torchvision op {name} as JSON: its kept arguments do not rebuild it ({op!r})")
    return node


def _tv_op_from_dict(node: dict):
    v2 = _tv_module()
    cls = getattr(v2, node["class"], None)
    if not (inspect.isclass(cls) and issubclass(cls, v2.Transform)):
        raise ValueError(f"unknown torchvision op {node['class']!r}")
    return cls(**{k: _tv_unvalue(x) for k, x in node["args"].items()})


def _fallback_dict(stage) -> dict:
    if stage.library == "albumentations":
        import albumentations as A

        op = A.to_dict(stage.op)
    else:
        op = _tv_op_dict(stage.op)
    return {"type": "Fallback", "library": stage.library, "position": stage.position, "op": op}


def _fallback_from_dict(node: dict):
    from fastaug.convert import _Fallback

    if node["library"] == "albumentations":
        import albumentations as A

        op = A.from_dict(node["op"])
    elif node["library"] == "torchvision":
        op = _tv_op_from_dict(node["op"])
    else:
        raise ValueError(f"unknown fallback library {node['library']!r}")
    return _Fallback(op, node["library"], int(node["position"]))


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
