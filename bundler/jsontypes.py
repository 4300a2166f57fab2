"""The types of JSON at bundler's edges, so mypy checks what is written and what is read.

- `Doc` is a document bundler writes (`--json`, a receipt, state.json, bundle.json): its values are
  JSON values (`Out`: mappings and sequences of them, tuples included), never a Path, a dataclass or
  an enum by mistake: json.dumps would fail, or print something no schema promises.
- `Json` is what `json.loads` returns, before it is read into a typed record (untrusted.Obj reads
  what crossed a trust boundary; `obj()` narrows bundler's own files).

Typed records hold what the code works with; a `Doc` is made by their `to_dict()` and read by their
`from_dict()` at the edge only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

Out: TypeAlias = "bool | int | float | str | Sequence[Out] | Mapping[str, Out] | None"
Doc: TypeAlias = "dict[str, Out]"
Json: TypeAlias = "bool | int | float | str | list[Json] | dict[str, Json] | None"
JsonObject: TypeAlias = "dict[str, Json]"


def obj(value: object, what: str = "a JSON document") -> JsonObject:
    """`value` (what json.loads returned from one of the site's own files) as an object, or
    ValueError naming `what`."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    return value


def text(doc: Mapping[str, object], key: str) -> str:
    """A string field of a document bundler wrote ("" when absent or not a string)."""
    value = doc.get(key)
    return value if isinstance(value, str) else ""


def number(doc: Mapping[str, object], key: str) -> int:
    """An integer field of a document bundler wrote (0 when absent or not an integer)."""
    value = doc.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
