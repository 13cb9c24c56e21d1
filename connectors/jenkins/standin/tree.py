"""The ``tree=`` query language (Stapler's ``NamedPathPruner`` grammar) and the pruning it drives.

Also the lazily computed values pruning walks (:class:`_Bean`, :class:`_LazyMap`,
:class:`_LazyList`), so the model can hand a pruner objects whose JSON is made only when asked
for, and the JSON encoding of answers.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class TreeError(ValueError):
    """A ``tree=`` expression that Stapler's parser rejects (served as HTTP 400)."""


class _Node:
    """One level of a parsed ``tree``: the properties wanted below it and the range of its list."""

    __slots__ = ("children", "full", "hi", "lo")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.full = False  # internal: emit the value unpruned (depth-0 defaults only)
        self.lo = 0
        self.hi: int | None = None

    def __repr__(self) -> str:
        rng = "" if (self.lo, self.hi) == (0, None) else f"{{{self.lo},{self.hi}}}"
        return f"{'FULL' if self.full else self.children}{rng}"


_SPECIAL = frozenset(",[]{}")


class _TreeParser:
    def __init__(self, spec: str, internal: bool) -> None:
        self.spec = spec
        self.internal = internal
        self.toks: list[tuple[str, int]] = []
        i = 0
        while i < len(spec):
            if spec[i] in _SPECIAL:
                self.toks.append((spec[i], i))
                i += 1
                continue
            j = i
            while j < len(spec) and spec[j] not in _SPECIAL:
                j += 1
            self.toks.append((spec[i:j], i))
            i = j
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i][0] if self.i < len(self.toks) else None

    def pos(self) -> int:
        return self.toks[self.i][1] if self.i < len(self.toks) else len(self.spec)

    def expect(self, tok: str) -> None:
        if self.peek() != tok:
            raise TreeError(f"expected {tok!r} at {self.pos()} in tree={self.spec!r}")
        self.i += 1

    def parse(self) -> _Node:
        root = _Node()
        self.items(root)
        if self.peek() is not None:
            raise TreeError(f"unexpected {self.peek()!r} at {self.pos()} in tree={self.spec!r}")
        return root

    def items(self, node: _Node) -> None:
        self.node(node)
        while self.peek() == ",":
            self.i += 1
            self.node(node)

    def node(self, parent: _Node) -> None:
        name = self.peek()
        if name is None or name in _SPECIAL:
            raise TreeError(f"expected name at {self.pos()} in tree={self.spec!r}")
        self.i += 1
        sub = _Node()
        parent.children[name] = sub
        if self.peek() == "[":
            self.i += 1
            self.items(sub)
            self.expect("]")
            if self.internal and list(sub.children) == ["**"]:
                sub.children = {}
                sub.full = True
        if self.peek() == "{":
            self.i += 1
            self.range(sub)
            self.expect("}")

    def range(self, sub: _Node) -> None:
        if self.peek() == ",":  # {,N}
            self.i += 1
            sub.lo, sub.hi = 0, self.number()
            return
        lo = self.number()
        if self.peek() == "}":  # {N}: just element N
            sub.lo, sub.hi = lo, lo + 1
            return
        self.expect(",")
        if self.peek() == "}":  # {M,}
            sub.lo, sub.hi = lo, None
            return
        sub.lo, sub.hi = lo, self.number()  # {M,N}: M inclusive, N exclusive

    def number(self) -> int:
        tok = self.peek()
        if tok is None or not re.fullmatch(r"[0-9]+", tok):
            raise TreeError(f"expected number at {self.pos()} in tree={self.spec!r}")
        self.i += 1
        return int(tok)


@functools.lru_cache(maxsize=512)
def parse_tree(spec: str, *, internal: bool = False) -> _Node:
    """Parse a ``tree=`` value with Stapler's grammar: ``a,b[c,d[e]]{M,N},f[*]``.

    Ranges follow a property (``{M,N}`` M inclusive/N exclusive, ``{M,}``, ``{,N}``, ``{N}``).
    Raises :class:`TreeError` where Jenkins would refuse the expression. Results are cached and
    shared: do not mutate them.
    """
    return _TreeParser(spec, internal).parse()


class _Bean:
    """An exported object whose properties are computed only when a request asks for them."""

    __slots__ = ()

    def jclass(self) -> str | None:
        raise NotImplementedError

    def fields(self) -> Sequence[str]:
        raise NotImplementedError

    def values(self, keys: Sequence[str]) -> list[Any]:
        raise NotImplementedError

    def full(self) -> dict[str, Any]:
        """Every property, unpruned (the depth-0 answer for a build)."""
        keys = self.fields()
        out: dict[str, Any] = {}
        cls = self.jclass()
        if cls is not None:
            out["_class"] = cls
        out.update(zip(keys, self.values(keys), strict=True))
        return out


class _JMap(dict):  # type: ignore[type-arg]
    """A ``java.util.Map`` property: its keys are data, so pruning applies to its values only."""


class _LazyMap:
    """A map generated when serialised (``buildsByBranchName`` of bulk builds)."""

    __slots__ = ("factory",)

    def __init__(self, factory: Callable[[], Iterator[tuple[str, Any]]]) -> None:
        self.factory = factory

    def items(self) -> Iterator[tuple[str, Any]]:
        return self.factory()


class _LazyList:
    """A list property sliced on demand (a job's builds), without materialising all of it."""

    __slots__ = ()

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, s: slice) -> list[Any]:
        raise NotImplementedError

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])


def _prune(value: Any, node: _Node) -> Any:
    """Apply one tree level to a value the way Stapler's ``Property.writeValue`` does."""
    if node.full or value is None or isinstance(value, (str, int, float)):
        return value
    if type(value) is dict:
        return _prune_dict(value, node)
    if isinstance(value, (list, tuple, _LazyList)):
        return [_prune(v, node) for v in value[node.lo : node.hi]]
    if isinstance(value, _Bean):
        children = node.children
        star = children.get("*")
        out: dict[str, Any] = {}
        cls = value.jclass()
        if cls is not None:
            out["_class"] = cls
        picked = [(k, sub) for k in value.fields() if (sub := children.get(k, star)) is not None]
        vals = value.values([k for k, _ in picked])
        for (k, sub), v in zip(picked, vals, strict=True):
            out[k] = _prune(v, sub)
        return out
    if isinstance(value, (_JMap, _LazyMap)):
        return {k: _prune(v, node) for k, v in value.items()}
    if isinstance(value, dict):
        return _prune_dict(value, node)
    return value


def _prune_dict(value: dict[str, Any], node: _Node) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cls = value.get("_class")
    if cls is not None:
        out["_class"] = cls
    children = node.children
    star = children.get("*")
    for k, v in value.items():
        if k == "_class":
            continue
        sub = children.get(k, star)
        if sub is not None:
            out[k] = _prune(v, sub)
    return out


def _json_default(obj: Any) -> Any:
    if isinstance(obj, _Bean):
        return obj.full()
    if isinstance(obj, _LazyMap):
        return dict(obj.items())
    if isinstance(obj, _LazyList):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _dumps(obj: Any, pretty: bool = False) -> bytes:
    if pretty:
        text = json.dumps(obj, default=_json_default, ensure_ascii=False, indent=2)
    else:
        text = json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")
