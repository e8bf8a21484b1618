"""
Finding the random generators a dataset holds, and naming them by their path.

The walk reads instance ``__dict__``s and slots directly, so it never runs user
code (no properties, no ``__getattr__``), and it is bounded in depth, objects
and items per container, so a dataset holding a million samples costs the same
as one holding ten.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import wrapt

from seedwatch._generators import is_generator

MAX_DEPTH = 8
MAX_OBJECTS = 5_000
MAX_ITEMS_PER_CONTAINER = 256

_OPAQUE: tuple[type, ...] = (
    str,
    bytes,
    bytearray,
    memoryview,
    int,
    float,
    complex,
    bool,
    type(None),
    range,
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    np.ndarray,
    np.generic,
    torch.Tensor,
)


#: wrapt's C-level ``__wrapped__`` slot: reading it runs no code of the proxy's class.
_WRAPPED = wrapt.BaseObjectProxy.__dict__["__wrapped__"]


def find_generators(root: object) -> list[tuple[str, object]]:
    """
    Return ``(path, generator)`` for every generator reachable from ``root``.

    Paths read like Python: ``rng``, ``transform.state``, ``transforms[2].g``,
    ``augs['flip'].rng``, ``datasets[1].rng``. A generator reachable by two paths
    is listed once, under the shortest. A wrapt proxy (a monitored dataset
    inside another) is seen through: its wrapped object is walked under the
    proxy's own path.
    """
    found: list[tuple[str, object]] = []
    seen: set[int] = set()
    queue: deque[tuple[str, object, int]] = deque([("", root, 0)])
    visited = 0
    while queue and visited < MAX_OBJECTS:
        path, obj, depth = queue.popleft()
        while issubclass(type(obj), wrapt.BaseObjectProxy):
            obj = _WRAPPED.__get__(obj, type(obj))
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        visited += 1
        if is_generator(obj):
            found.append((path, obj))
            continue
        if depth >= MAX_DEPTH or isinstance(obj, _OPAQUE):
            continue
        for child_path, child in _children(path, obj):
            if not isinstance(child, _OPAQUE) or is_generator(child):
                queue.append((child_path, child, depth + 1))
    return found


def _children(path: str, obj: object) -> Iterator[tuple[str, object]]:
    if isinstance(obj, (list, tuple)):
        for index, item in enumerate(obj[:MAX_ITEMS_PER_CONTAINER]):
            yield f"{path}[{index}]", item
        return
    if isinstance(obj, dict):
        for count, (key, value) in enumerate(obj.items()):
            if count >= MAX_ITEMS_PER_CONTAINER:
                return
            yield f"{path}[{key!r}]", value
        return
    attributes = _attributes(obj)
    for count, (name, value) in enumerate(attributes.items()):
        if count >= MAX_ITEMS_PER_CONTAINER:
            return
        yield (f"{path}.{name}" if path else name), value


def _attributes(obj: object) -> dict[str, Any]:
    """Read ``obj``'s instance dict and slots without calling its code."""
    attributes: dict[str, Any] = {}
    try:
        instance_dict = object.__getattribute__(obj, "__dict__")
    except (AttributeError, TypeError):
        instance_dict = None
    if isinstance(instance_dict, dict):
        attributes.update((k, v) for k, v in instance_dict.items() if isinstance(k, str))
    for klass in type(obj).__mro__:
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            descriptor = klass.__dict__.get(name)
            if isinstance(descriptor, types.MemberDescriptorType) and name not in attributes:
                try:
                    attributes[name] = descriptor.__get__(obj, klass)
                except AttributeError:  # an unset slot
                    continue
    return attributes
