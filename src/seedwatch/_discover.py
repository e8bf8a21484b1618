"""
Finding the random generators a pipeline holds or uses, and naming each where a user finds it.

Where the walk looks, from the dataset (and, for an iterable, its running iterator):

- attributes and slots of objects, items of lists, tuples and dicts, and the
  object inside a wrapt proxy (a monitored dataset inside another);
- callables: closure cells, default arguments, ``functools.partial``'s
  ``func``/``args``/``keywords``, a bound method's ``__self__``;
- class attributes along each visited object's class hierarchy, unless the
  instance shadows them (MONAI's ``Randomizable.R``);
- module globals that the pipeline's code names: the code of the functions it
  holds, and of its classes' fetching methods (``__getitem__``, ``__iter__``,
  ``__call__``, ``forward``, ...) and the methods and helper functions those name;
- a suspended generator's frame: the locals of an iterable's running ``__iter__``
  and of what it delegates to (``yield from``).

It never runs user code: it reads ``__dict__``, slots, class dicts, cells,
code objects and frames directly, so no property, descriptor or
``__getattr__`` fires. It is bounded in depth, objects, items per container and
hops through code, and in time (:data:`MAX_SECONDS`), so a dataset holding a
million samples costs the same as one holding ten. Code of PyTorch, numpy and
the standard library is not read: their only streams are the process globals,
which are watched anyway.
"""

from __future__ import annotations

import dis
import functools
import gc
import itertools
import os
import sys
import sysconfig
import time
import types
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import wrapt

from seedwatch._generators import is_generator

MAX_DEPTH = 8
MAX_OBJECTS = 5_000
#: A walk stops looking after this long, whatever is left (checked every 64 objects).
MAX_SECONDS = 0.2
MAX_ITEMS_PER_CONTAINER = 256
#: How many functions deep the walk follows names from code to globals and methods.
MAX_CODE_HOPS = 3

#: Methods through which a dataset, transform or module draws while serving items.
FETCHING_METHODS = frozenset(
    {"__getitem__", "__getitems__", "__iter__", "__next__", "__call__", "forward"}
)

#: wrapt's C-level ``__wrapped__`` slot: reading it runs no code of the proxy's class.
_WRAPPED = wrapt.BaseObjectProxy.__dict__["__wrapped__"]
#: A lazy proxy creates its object (imports a module) when unwrapped: left alone.
_LAZY = wrapt.LazyObjectProxy
#: ``type``'s own descriptors: reading a class through them runs no metaclass code.
_MRO = type.__dict__["__mro__"]
_CLASS_DICT = type.__dict__["__dict__"]
_QUALNAME = type.__dict__["__qualname__"]
_PARTIAL_FIELDS = tuple(functools.partial.__dict__[name] for name in ("func", "args", "keywords"))

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
    types.ModuleType,
    types.CodeType,
    types.FrameType,
    np.ndarray,
    np.generic,
    torch.Tensor,
)

#: Top-level packages whose code is never read for globals (see the module docstring).
_UNREAD_PACKAGES = frozenset({"torch", "numpy", "wrapt", "seedwatch"})
_STDLIB_DIRECTORY = sysconfig.get_path("stdlib")
#: The standard library's directory as text, as given and resolved, each ending in a separator.
_STDLIB = tuple(
    {
        os.path.join(os.path.normcase(directory), "")  # noqa: PTH118 - text, no Path objects
        for directory in (_STDLIB_DIRECTORY, os.path.realpath(_STDLIB_DIRECTORY))
    }
)
_SITE_PACKAGES = f"{os.sep}site-packages{os.sep}"

#: Where a generator is kept, for hints: what holds it decides the fix.
Place = Literal["attribute", "closure", "class", "global", "frame"]

_Item = tuple[str, object, int, int, Place, "_Lineage"]  # path, object, depth, hops, place, holder
_Child = tuple[str, Any, int, Place | None]  # path, object, code hops, place (None: the parent's)


class Found(NamedTuple):
    """
    A generator, the path that reaches it, and what holds it.

    ``holder`` is the module and name of the object (or function) whose attribute,
    item or local it is; ``owner`` the path of the outermost object on the way of
    the same top-level package as that holder (``t`` for every transform inside
    an albumentations ``Compose`` at ``t``): the generators of one owner are one
    problem with one fix. ``aliases`` are the other paths that reach it.
    """

    path: str
    generator: object
    place: Place
    holder: str = ""
    owner: str = ""
    aliases: tuple[str, ...] = ()


#: Wrappers (bound methods, builtins) that belong to whoever holds them.
_TRANSPARENT_PACKAGES = frozenset({"builtins", "functools"})

#: How many other paths to one generator are named, at most.
MAX_ALIASES = 16


class _Lineage(NamedTuple):
    """Who holds what the walk is looking at: the holder's name, the owner's package and path."""

    holder: str
    package: str
    owner: str


_opaque_types: dict[type, bool] = {}


def _is_opaque(kind: type) -> bool:
    """Whether objects of this type hold nothing to walk (numbers, text, arrays, modules)."""
    opaque = _opaque_types.get(kind)
    if opaque is None:
        opaque = issubclass(kind, _OPAQUE)
        if len(_opaque_types) < 10_000:
            _opaque_types[kind] = opaque
    return opaque


_LEFT_ALONE = object()


def _unwrapped(obj: object) -> object:
    """See through wrapt proxies (a monitored dataset in another); leave lazy ones alone."""
    while issubclass(type(obj), wrapt.BaseObjectProxy):
        if issubclass(type(obj), _LAZY):
            return _LEFT_ALONE
        obj = _WRAPPED.__get__(obj, type(obj))
    return obj


def find_generators(
    root: object, *more: tuple[str, object], known: Iterable[object] = ()
) -> list[Found]:
    """
    Return ``(path, generator)`` for every generator reachable from ``root`` (and ``more``).

    Paths read like Python where they can: ``rng``, ``transform.state``,
    ``transforms[2].g``, ``augs['flip'].rng``, ``datasets[1].rng``; a closure's
    or default argument's name as ``transform(make_noise.add).rng``; a class
    attribute as ``Randomizable.R``; a module global as ``train.RNG``; an
    iterator's local as ``Shards.__iter__().rng``. A generator reachable by
    several paths is listed once, under the first found (breadth first, so the
    shortest). ``more`` are extra ``(path, object)`` roots, walked after ``root``;
    ``known`` generators (a custom source's) are not listed again.
    """
    found: list[Found] = []
    seen: set[int] = {id(rng) for rng in known}
    #: Where each generator found so far is in ``found``, to name its other paths.
    index: dict[int, int] = {}
    nobody = _Lineage("", "", "")
    queue: deque[_Item] = deque(
        [("", root, 0, 0, "attribute", nobody), *((p, o, 0, 0, "frame", nobody) for p, o in more)]
    )
    visited = 0
    deadline = time.perf_counter() + MAX_SECONDS
    while queue and visited < MAX_OBJECTS:
        if visited % 64 == 63 and time.perf_counter() > deadline:
            break
        path, obj, depth, hops, place, lineage = queue.popleft()
        obj = _unwrapped(obj)
        if obj is _LEFT_ALONE:
            continue
        if id(obj) in seen:
            _add_alias(found, index.get(id(obj)), path)
            continue
        seen.add(id(obj))
        visited += 1
        if is_generator(obj):
            index[id(obj)] = len(found)
            found.append(Found(_unique(path, found), obj, place, lineage.holder, lineage.owner))
            continue
        if depth >= MAX_DEPTH or _is_opaque(type(obj)):
            continue
        inner = _lineage_of(obj, path, lineage)
        for child_path, value, child_hops, child_place in _children(path, obj, hops, seen):
            if len(queue) >= 2 * MAX_OBJECTS:  # more than the walk will ever visit
                break
            if not _is_opaque(type(value)):
                queue.append(
                    (child_path, value, depth + 1, child_hops, child_place or place, inner)
                )
    return found


def _add_alias(found: list[Found], position: int | None, path: str) -> None:
    """Name another path to a generator found already (nothing for other objects)."""
    if position is None:
        return
    item = found[position]
    if path != item.path and path not in item.aliases and len(item.aliases) < MAX_ALIASES:
        found[position] = item._replace(aliases=(*item.aliases, path))


def _lineage_of(obj: object, path: str, parent: _Lineage) -> _Lineage:
    """Say who holds ``obj``'s children: ``obj`` itself, within its owner's package."""
    kind = type(obj)
    if kind in (list, tuple, dict):  # a container belongs to whoever holds it
        return parent
    if issubclass(kind, functools.partial):
        obj = _PARTIAL_FIELDS[0].__get__(obj)  # what it holds is its function's
        kind = type(obj)
    if kind is types.FunctionType:
        function: Any = obj
        holder = f"{_module_name(function.__module__)}.{_short(function.__qualname__)}"
    elif kind is types.GeneratorType:
        generator: Any = obj
        frame = generator.gi_frame
        module = _module_name(frame.f_globals.get("__name__") if frame is not None else None)
        holder = f"{module}.{_short(generator.__qualname__)}"
    else:
        klass: Any = obj if issubclass(kind, type) else kind
        module = _CLASS_DICT.__get__(klass).get("__module__", "builtins")  # no metaclass code
        holder = f"{_module_name(module)}.{_QUALNAME.__get__(klass)}"
    package = holder.partition(".")[0]
    if package in _TRANSPARENT_PACKAGES:  # a bound method or a partial: its holder's
        return parent
    if package == parent.package:
        return _Lineage(holder, package, parent.owner)
    return _Lineage(holder, package, path)


def _children(path: str, obj: object, hops: int, seen: set[int]) -> Iterator[_Child]:
    """Yield ``(path, child, hops)`` for what ``obj`` holds or, for code, names."""
    kind = type(obj)  # never obj.__class__, which a class may compute
    reader = _READERS.get(kind)
    if reader is not None:
        yield from reader(path, obj, hops)
    elif issubclass(kind, (list, tuple, dict)):
        yield from _items(path, obj, hops)  # type: ignore[arg-type]
    elif issubclass(kind, type):
        yield from _class_children(obj, set(), hops, seen)  # type: ignore[arg-type]
    else:
        yield from _object_children(path, obj, hops, seen)


def _items(
    path: str, container: list[Any] | tuple[Any, ...] | dict[Any, Any], hops: int
) -> Iterator[_Child]:
    is_dict = issubclass(type(container), dict)
    values = dict.values(container) if is_dict else container  # type: ignore[arg-type]
    # Samples are mostly numbers, strings and arrays: one pass over their types at C speed
    # tells whether anything here is worth naming and walking.
    kinds = set(map(type, itertools.islice(values, MAX_ITEMS_PER_CONTAINER)))
    if all(_is_opaque(kind) for kind in kinds):
        return
    pairs = dict.items(container) if is_dict else enumerate(container)  # type: ignore[arg-type]
    for key, value in itertools.islice(pairs, MAX_ITEMS_PER_CONTAINER):
        if not _is_opaque(type(value)):
            yield f"{path}[{key!r}]", value, hops, None


def _object_children(path: str, obj: object, hops: int, seen: set[int]) -> Iterator[_Child]:
    if issubclass(type(obj), functools.partial):
        func, args, keywords = (field.__get__(obj) for field in _PARTIAL_FIELDS)
        yield f"{_dot(path)}func", func, hops, None
        yield f"{_dot(path)}args", args, hops, "closure"  # bound arguments, as a closure's
        yield f"{_dot(path)}keywords", keywords, hops, "closure"
    attributes = _attributes(obj)
    for count, (name, value) in enumerate(attributes.items()):
        if count >= MAX_ITEMS_PER_CONTAINER:
            break
        yield f"{_dot(path)}{name}", value, hops, None
    yield from _class_children(type(obj), set(attributes), hops, seen)


def _method_children(path: str, method: Any, hops: int) -> Iterator[_Child]:
    # A bound method's object; for ``rng.integers`` stored as a callable, the generator.
    yield f"{_dot(path)}__self__", method.__self__, hops, None
    function = getattr(method, "__func__", None)  # Python methods only; C ones have none
    if function is not None:
        yield path, function, hops, None


def _decorated_children(path: str, decorated: Any, hops: int) -> Iterator[_Child]:
    yield path, decorated.__func__, hops, None  # staticmethod and classmethod


def _function_children(path: str, function: types.FunctionType, hops: int) -> Iterator[_Child]:
    """Yield a function's captured names, default arguments and the globals its code names."""
    if not _is_read(function):
        return
    code = function.__code__
    short = _short(function.__qualname__)
    where = f"{path}({short})" if path else short
    cells = function.__closure__ or ()
    for name, cell in zip(code.co_freevars, cells, strict=False):
        contents = _cell_contents(cell)
        if contents is not _EMPTY:
            yield f"{where}.{name}", contents, hops, "closure"
    defaults = function.__defaults__ or ()
    positional = code.co_varnames[: code.co_argcount]
    for name, value in zip(positional[len(positional) - len(defaults) :], defaults, strict=True):
        yield f"{where}.{name}", value, hops, "closure"
    for name, value in (function.__kwdefaults__ or {}).items():
        yield f"{where}.{name}", value, hops, "closure"
    if hops >= MAX_CODE_HOPS:
        return
    namespace = function.__globals__
    module = _module_name(namespace.get("__name__"))
    for name in _global_names(code):
        value = namespace.get(name)
        kind = type(value)
        if value is None or issubclass(kind, types.ModuleType):
            continue
        if is_generator(value) or issubclass(kind, (types.FunctionType, type)) or _is_plain(value):
            yield f"{module}.{name}", value, hops + 1, "global"


def _frame_children(
    path: str, generator: types.GeneratorType[Any, Any, Any], hops: int
) -> Iterator[_Child]:
    """Yield a suspended generator's locals (a running ``__iter__``) and its delegate."""
    frame = generator.gi_frame
    if frame is None:  # finished
        return
    # Named by the generator function alone: which object holds the iterator says little.
    where = f"{_short(generator.__qualname__)}()"
    snapshot = frame.f_locals
    named = dict(snapshot)
    if sys.version_info < (3, 13):
        # Before 3.13 f_locals is a dict stored on the frame: emptied, it keeps no
        # local alive (a decoded shard) past its time. From 3.13 it is a live view.
        snapshot.clear()
    for name, value in named.items():
        yield f"{where}.{name}", value, hops, "frame"
    delegate = generator.gi_yieldfrom
    if delegate is not None:
        yield path, delegate, hops, None
    # What the frame holds without a name: the iterator of a running ``for`` loop (a
    # webdataset stage chain) sits on its value stack, which the garbage collector sees.
    values = {id(value) for value in named.values()}
    for held in gc.get_referents(generator):
        if id(held) not in values and type(held) in _ITERATOR_TYPES:
            yield f"{where}.<for>", held, hops, "frame"


def _class_children(klass: type, shadowed: set[str], hops: int, seen: set[int]) -> Iterator[_Child]:
    """Yield generators stored on a class or its bases, and its fetching methods' code."""
    methods: dict[str, Any] = {}
    for base in _MRO.__get__(klass):
        if not _is_read(base):
            continue
        for name, value in _CLASS_DICT.__get__(base).items():
            if is_generator(value):
                if name not in shadowed:
                    yield f"{_short(_QUALNAME.__get__(base))}.{name}", value, hops, "class"
            elif type(value) in (types.FunctionType, staticmethod, classmethod):
                methods.setdefault(name, getattr(value, "__func__", value))
    if hops < MAX_CODE_HOPS and id(klass) not in seen:
        seen.add(id(klass))
        # Their names read ``Class.method.name``: the function's qualname says where.
        yield from (("", function, hops, None) for function in _fetching_methods(methods))


def _fetching_methods(methods: dict[str, Any]) -> Iterator[Any]:
    """Yield the fetching methods and, transitively, the methods they name (``self._aug``)."""
    pending = [name for name in FETCHING_METHODS if name in methods]
    followed: set[str] = set()
    while pending and len(followed) < MAX_ITEMS_PER_CONTAINER:
        name = pending.pop()
        if name in followed:
            continue
        followed.add(name)
        function = methods[name]
        yield function
        if isinstance(function, types.FunctionType):
            pending.extend(n for n in _names(function.__code__) if n in methods)


_EMPTY = object()


def _cell_contents(cell: types.CellType) -> object:
    try:
        return cell.cell_contents
    except ValueError:  # a cell not filled yet
        return _EMPTY


def _instance_dict(obj: object, mro: tuple[type, ...]) -> dict[str, Any] | None:
    """
    Return ``obj.__dict__`` through the C descriptor that holds it, or ``None``.

    The first ``__dict__`` along the class hierarchy decides: if it is a Python
    property (or any other descriptor written in Python) it is not called.
    """
    for klass in mro:
        holder = _CLASS_DICT.__get__(klass).get("__dict__")
        if holder is None:
            continue
        if type(holder) not in (types.GetSetDescriptorType, types.MemberDescriptorType):
            return None
        try:
            found = holder.__get__(obj, type(obj))
        except (AttributeError, TypeError):
            return None
        return found if type(found) is dict else None
    return None


def _attributes(obj: object) -> dict[str, Any]:
    """Read ``obj``'s instance dict and slots without calling its code."""
    attributes: dict[str, Any] = {}
    mro = _MRO.__get__(type(obj))
    instance_dict = _instance_dict(obj, mro)
    if instance_dict is not None:
        attributes.update((k, v) for k, v in instance_dict.items() if type(k) is str)
    for klass in mro:
        namespace = _CLASS_DICT.__get__(klass)
        slots = namespace.get("__slots__", ())
        for name in (slots,) if type(slots) is str else slots:
            descriptor = namespace.get(name)
            if type(descriptor) is types.MemberDescriptorType and name not in attributes:
                try:
                    attributes[name] = descriptor.__get__(obj, klass)
                except AttributeError:  # an unset slot
                    continue
    return attributes


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    """Yield ``code`` and the code nested in it (functions, lambdas, comprehensions)."""
    yield code
    for constant in code.co_consts:
        if type(constant) is types.CodeType:
            yield from _codes(constant)


@functools.lru_cache(maxsize=4096)
def _names(code: types.CodeType) -> tuple[str, ...]:
    """Return every global or attribute name ``code`` uses, nested code included."""
    return tuple(dict.fromkeys(name for part in _codes(code) for name in part.co_names))


@functools.lru_cache(maxsize=4096)
def _global_names(code: types.CodeType) -> tuple[str, ...]:
    """
    Return the names ``code`` reads as globals, nested code included.

    Not ``co_names``, which also holds attribute names: ``self.rng`` must not
    pull in a module global that happens to be called ``rng``.
    """
    return tuple(dict.fromkeys(name for part in _codes(code) for name in _global_loads(part)))


_LOAD_GLOBAL = dis.opmap["LOAD_GLOBAL"]
_LOAD_NAME = dis.opmap["LOAD_NAME"]
#: From 3.11 the low bit of LOAD_GLOBAL's argument says whether to push NULL first.
_LOAD_GLOBAL_SHIFT = 1 if sys.version_info >= (3, 11) else 0


def _global_loads(code: types.CodeType) -> Iterator[str]:
    """
    Yield the names ``code``'s LOAD_GLOBAL and LOAD_NAME instructions read, in order.

    Read from the raw bytecode: ``dis.get_instructions`` builds an object per
    instruction, some 50 µs per function the first time in a new worker.
    """
    raw, names, extended = code.co_code, code.co_names, 0
    for offset in range(0, len(raw), 2):
        opcode, argument = raw[offset], raw[offset + 1] | extended
        if opcode == dis.EXTENDED_ARG:
            extended = argument << 8
            continue
        extended = 0
        if opcode == _LOAD_GLOBAL:
            yield names[argument >> _LOAD_GLOBAL_SHIFT]
        elif opcode == _LOAD_NAME:
            yield names[argument]


def _is_read(owner: object) -> bool:
    """Whether a function's or class's code belongs to the pipeline, not torch, numpy or stdlib."""
    if issubclass(type(owner), type):
        module = _CLASS_DICT.__get__(owner).get("__module__")  # no metaclass code runs
    else:
        module = getattr(owner, "__module__", None)  # a plain attribute of functions
    return isinstance(module, str) and not _is_library(module.partition(".")[0])


@functools.lru_cache(maxsize=1024)
def _is_library(package: str) -> bool:
    """
    Whether a top-level package is torch, numpy, wrapt, seedwatch or the standard library.

    A name is not enough for the standard library: a user's own ``pipes.py`` or
    ``queue.py`` shares a name with one, so the module's file decides (by its
    text: resolving it would cost a system call per directory in every worker).
    """
    if package in _UNREAD_PACKAGES:
        return True
    if package not in sys.stdlib_module_names:
        return False
    module = sys.modules.get(package)
    if module is None:
        return True
    location = vars(module).get("__file__")  # the module's dict: no module __getattr__ runs
    if not isinstance(location, str):
        return True  # built into the interpreter
    path = os.path.normcase(os.path.abspath(location))  # noqa: PTH100 - no system call
    return path.startswith(_STDLIB) and _SITE_PACKAGES not in path


def _is_plain(value: object) -> bool:
    """Whether a module global is an object worth walking (a transform, a container)."""
    kind = type(value)
    return _is_read(kind) or issubclass(kind, (list, tuple, dict, functools.partial))


def _module_name(name: object) -> str:
    # A spawned worker runs the main script as __mp_main__; users know it as __main__.
    if not isinstance(name, str):
        return "<module>"
    return "__main__" if name == "__mp_main__" else name


def _short(qualname: str) -> str:
    """``make_noise.<locals>.add`` reads as ``make_noise.add``."""
    return qualname.replace(".<locals>", "")


def _unique(path: str, found: list[Found]) -> str:
    """Return ``path``, numbered if taken (two running ``_shuffle()`` stages: ``...rng#2``)."""
    taken = {item.path for item in found}
    if path not in taken:
        return path
    return next(f"{path}#{n}" for n in range(2, len(found) + 2) if f"{path}#{n}" not in taken)


def _dot(path: str) -> str:
    return f"{path}." if path else ""


#: Unnamed values of a frame worth walking: running iterators over the pipeline's data.
_ITERATOR_TYPES = frozenset({types.GeneratorType})

_READERS: dict[type, Any] = {
    types.FunctionType: _function_children,
    types.MethodType: _method_children,
    types.BuiltinMethodType: _method_children,
    types.GeneratorType: _frame_children,
    staticmethod: _decorated_children,
    classmethod: _decorated_children,
}
