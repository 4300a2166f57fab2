"""Reading JSON that crossed a trust boundary (bundle.json, signatures.json, a parts index, a site
receipt, the site's own state): bounded, and total. Whatever the bytes, the result is the value
asked for or `Malformed` naming the field (`images[2].platforms[0]: expected a string, ...`); never
another exception, never unbounded memory or recursion.

    doc = Obj.load(data, MAX_BYTES)
    name = doc.string("name", names.bundle_name)
    for item in doc.array("images"):
        digest = item.obj().string("digest", check_digest)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from enum import Enum
from typing import TypeVar, overload

import yaml

from bundler.jsontypes import Json, JsonObject

T = TypeVar("T")
D = TypeVar("D")

MAX_DEPTH = 32
MAX_INT = 1 << 62


class _Missing(Enum):
    MISSING = "missing"


_MISSING = _Missing.MISSING  # no default: the field is required


class Malformed(ValueError):
    """Untrusted input of the wrong shape; the message names the field."""


def kind(value: object) -> str:
    """What a JSON value is, in the words of an error message."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


def load_json(data: bytes, max_bytes: int) -> Json:
    """Decode at most `max_bytes` of JSON nested at most MAX_DEPTH deep (NaN and Infinity refused)."""
    if len(data) > max_bytes:
        raise Malformed(f"{len(data)} bytes, more than the {max_bytes} allowed")
    try:
        value: Json = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise Malformed(f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError, numbers too long to read
        raise Malformed(f"not valid JSON ({exc})") from None
    pending: list[tuple[Json, int]] = [(value, 1)]
    while pending:  # no recursion here either
        item, depth = pending.pop()
        if depth > MAX_DEPTH:
            raise Malformed(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(item, dict):
            pending.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            pending.extend((v, depth + 1) for v in item)
    return value


class Value:
    """One untrusted JSON value and where it is (for messages)."""

    def __init__(self, value: Json, where: str) -> None:
        self.value = value
        self.where = where

    def fail(self, message: str) -> Malformed:
        return Malformed(f"{self.where}: {message}" if self.where else message)

    def _wrong(self, name: str) -> Malformed:
        return self.fail(f"expected {name}, got {kind(self.value)}")

    def obj(self) -> Obj:
        if not isinstance(self.value, dict):
            raise self._wrong("an object")
        return Obj(self.value, self.where)

    def string(self, check: Callable[[str], str] | None = None) -> str:
        if not isinstance(self.value, str):
            raise self._wrong("a string")
        return self.checked(self.value, check) if check else self.value

    def integer(self, low: int = 0, high: int = MAX_INT) -> int:
        value = self.value
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._wrong("a number")
        if not low <= value <= high:
            raise self.fail(f"{value} is out of range ({low}..{high})")
        return value

    def number(self) -> float:
        """An integer or a decimal (seconds, a rate)."""
        if not isinstance(self.value, int | float) or isinstance(self.value, bool):
            raise self._wrong("a number")
        return float(self.value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self._wrong("true or false")
        return self.value

    def items(self) -> Iterator[Value]:
        if not isinstance(self.value, list):
            raise self._wrong("an array")
        for i, item in enumerate(self.value):
            yield Value(item, f"{self.where}[{i}]")

    def checked(self, value: str, check: Callable[[str], T]) -> T:
        try:
            return check(value)
        except ValueError as exc:
            raise self.fail(str(exc)) from None


class Obj:
    """An untrusted JSON object: typed, checked access to its fields."""

    def __init__(self, value: JsonObject, where: str) -> None:
        self.value = value
        self.where = where

    def fail(self, message: str) -> Malformed:
        return Malformed(f"{self.where}: {message}" if self.where else message)

    @classmethod
    def load(cls, data: bytes, max_bytes: int) -> Obj:
        """The top-level object of a document; fields are then named from its root (`images[2].ref`)."""
        return Value(load_json(data, max_bytes), "").obj()

    def field(self, key: str, required: bool = True) -> Value | None:
        """The field's value; None when it is absent (or null) and not required."""
        where = f"{self.where}.{key}" if self.where else key
        value = self.value.get(key)
        if value is None:
            if required:
                raise Malformed(f"{where}: missing")
            return None
        return Value(value, where)

    # Each typed field: required (Malformed when absent), or with a default for absent and null.
    @overload
    def string(self, key: str, check: Callable[[str], str] | None = None) -> str: ...
    @overload
    def string(self, key: str, check: Callable[[str], str] | None = None, *, default: D) -> str | D: ...

    def string(self, key: str, check: Callable[[str], str] | None = None,
               default: object = _MISSING) -> object:
        found = self.field(key, default is _MISSING)
        return default if found is None else found.string(check)

    @overload
    def integer(self, key: str, low: int = 0, high: int = MAX_INT) -> int: ...
    @overload
    def integer(self, key: str, low: int = 0, high: int = MAX_INT, *, default: D) -> int | D: ...

    def integer(self, key: str, low: int = 0, high: int = MAX_INT, default: object = _MISSING) -> object:
        found = self.field(key, default is _MISSING)
        return default if found is None else found.integer(low, high)

    @overload
    def number(self, key: str) -> float: ...
    @overload
    def number(self, key: str, *, default: D) -> float | D: ...

    def number(self, key: str, default: object = _MISSING) -> object:
        found = self.field(key, default is _MISSING)
        return default if found is None else found.number()

    @overload
    def obj(self, key: str) -> Obj: ...
    @overload
    def obj(self, key: str, *, default: D) -> Obj | D: ...

    def obj(self, key: str, default: object = _MISSING) -> object:
        found = self.field(key, default is _MISSING)
        return default if found is None else found.obj()

    @overload
    def boolean(self, key: str) -> bool: ...
    @overload
    def boolean(self, key: str, *, default: D) -> bool | D: ...

    def boolean(self, key: str, default: object = _MISSING) -> object:
        found = self.field(key, default is _MISSING)
        return default if found is None else found.boolean()

    def array(self, key: str, required: bool = False) -> Iterator[Value]:
        """The items of an array field; an absent or null field is an empty array unless required."""
        found = self.field(key, required)
        return iter(()) if found is None else found.items()

    def strings(self, key: str, check: Callable[[str], str] | None = None) -> tuple[str, ...]:
        return tuple(str(item.string(check)) for item in self.array(key))

    def mapping(self, key: str, check_key: Callable[[str], str] | None = None,
                check_value: Callable[[str], str] | None = None, required: bool = True) -> dict[str, str]:
        """An object of string -> string (ref name -> object id, metadata); absent is {} unless required."""
        found = self.field(key, required)
        out: dict[str, str] = {}
        for name, item in (found.obj().entries() if found is not None else ()):
            if check_key is not None:
                item.checked(name, check_key)
            out[name] = item.string(check_value)
        return out

    def entries(self) -> Iterator[tuple[str, Value]]:
        for name, value in self.value.items():
            yield name, Value(value, f"{self.where}[{name!r}]")


MAX_YAML_EXPANSION = 100_000  # values aliases may add beyond the document's own (Helm refuses alias bombs too)


def _yaml_children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def load_yaml(data: bytes, max_bytes: int, max_expansion: int = MAX_YAML_EXPANSION) -> object:
    """One YAML document from untrusted bytes (a chart's Chart.yaml, values.yaml, a repository's
    index.yaml): at most `max_bytes`, and aliases adding at most `max_expansion` values to those the
    text holds, counted on the composed graph before anything is constructed; Malformed otherwise."""
    if len(data) > max_bytes:
        raise Malformed(f"{len(data)} bytes: larger than the {max_bytes} allowed")
    loader = yaml.SafeLoader(data)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        distinct: set[int] = set()
        stack = [root]
        while stack:  # the values the text holds (an alias's node once)
            node = stack.pop()
            if id(node) not in distinct:
                distinct.add(id(node))
                stack.extend(_yaml_children(node))
        limit, seen, stack = len(distinct) + max_expansion, 0, [root]
        while stack:  # the values once every alias is expanded, up to the limit
            node = stack.pop()
            seen += 1
            if seen > limit:
                raise Malformed(f"its aliases expand to more than {limit} values (an alias bomb)")
            stack.extend(_yaml_children(node))
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise Malformed(f"not YAML: {str(exc)[:300]}") from None
    except RecursionError:
        raise Malformed("nested too deep") from None
    finally:
        loader.dispose()
