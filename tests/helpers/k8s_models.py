"""Strict validation of Kubernetes objects against the API models kubernetes_asyncio ships.

The Kubernetes client quietly drops fields it does not know when it deserializes; the API
server (with strict field validation, the default for kubectl since 1.27) refuses them. This
walks a manifest (the JSON form) against the models' ``attribute_map`` and ``openapi_types``
and reports every unknown field and every value of the wrong kind, with its path.
"""

from __future__ import annotations

import re

from kubernetes_asyncio.client import models

_LIST = re.compile(r"list\[(.+)\]$")
_DICT = re.compile(r"dict\(([^,]+), (.+)\)$")
# resource.Quantity: typed as a string in the models, but the API accepts a JSON number too
# (cpu: 0.5, memory: 2147483648), as `kubectl apply` of `cpu: 1` shows.
_QUANTITY_MAPS = {"limits", "requests", "capacity", "allocatable", "hard"}
_QUANTITY_FIELDS = {"sizeLimit"}
_PRIMITIVES = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "object": object,
    "datetime": str,
    "date": str,
}


def problems(value, type_name: str, path: str = "") -> list[str]:
    m = _LIST.match(type_name)
    if m:
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [
            p for i, item in enumerate(value) for p in problems(item, m.group(1), f"{path}[{i}]")
        ]
    m = _DICT.match(type_name)
    if m:
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        item_type = m.group(2)
        if item_type == "str" and path.rsplit(".", 1)[-1] in _QUANTITY_MAPS:
            item_type = "quantity"
        return [p for k, v in value.items() for p in problems(v, item_type, f"{path}.{k}")]
    if type_name == "quantity" or (
        type_name == "str" and path.rsplit(".", 1)[-1] in _QUANTITY_FIELDS
    ):
        ok = isinstance(value, (str, int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a quantity (like 500m, 2Gi or a number)"]
    if type_name in _PRIMITIVES:
        if value is None:
            return []
        if type_name == "int" and isinstance(value, bool):
            return [f"{path}: expected int, got bool"]
        ok = isinstance(value, _PRIMITIVES[type_name])
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
    model = getattr(models, type_name, None)
    if model is None:
        return [f"{path}: unknown model {type_name}"]
    if value is None:
        return []
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    json_to_attr = {j: a for a, j in model.attribute_map.items()}
    out = []
    for key, item in value.items():
        attr = json_to_attr.get(key)
        if attr is None:
            out.append(f"{path}.{key}: unknown field of {type_name}")
            continue
        out += problems(item, model.openapi_types[attr], f"{path}.{key}")
    return out
