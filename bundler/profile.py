"""Profiles: what a bundle holds. YAML in, frozen dataclasses out, every problem with file:line.

What users write is validated strictly: an unknown key is an error (with a suggestion), never ignored.
This module reads the envelope (apiVersion, kind, metadata, spec.registries); each content kind
parses its own `spec.<key>` (bundler/kinds/*/spec.py) with the Checker here.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import yaml

from bundler.errors import ProfileError, UsageError
from bundler.names import NAME_RE, sha256_digest
from bundler.versions import SEMVER_RE

API_VERSION = "bundler/v1"
KIND = "Profile"

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
DURATION_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}


def parse_duration(text: str) -> dt.timedelta:
    """`72h`, `90d`, `12w` (as a profile's `expires`); UsageError otherwise."""
    found = DURATION_RE.match(text.strip())
    if found is None or int(found[1]) == 0:
        raise UsageError(f"{text!r} is not a duration: a number and h, d or w (e.g. 72h, 14d, 2w)")
    return int(found[1]) * DURATION_UNITS[found[2]]


MAX_PROFILE_BYTES = 1 << 20


@dataclass(frozen=True)
class RegistrySpec:
    """How to reach one source registry. Secrets are named by environment variable, never inline."""

    host: str
    username_env: str | None = None
    password_env: str | None = None
    plain_http: bool | None = None
    ca_file: str | None = None


T = TypeVar("T")


@dataclass(frozen=True)
class Profile:
    """A parsed profile: the release, each kind's items, the registries' credentials, settings; its file
    and digest."""
    name: str
    version: str
    description: str
    expires: dt.timedelta | None  # how long a bundle built from this profile is valid
    specs: dict[str, tuple[object, ...]]  # kind key (spec.images, ...) -> what each item asks for
    registries: tuple[RegistrySpec, ...]
    path: str
    digest: str
    settings: dict[str, object] = field(default_factory=dict)  # a kind's further spec keys (spec.imagePolicy)

    def registry(self, host: str) -> RegistrySpec | None:
        return next((r for r in self.registries if r.host == host), None)

    def items(self, kind: str) -> tuple[object, ...]:
        """What `spec.<kind>` asks for (empty when the profile does not say)."""
        return self.specs.get(kind, ())


# --- YAML with line numbers -------------------------------------------------------------------


class Map(dict[str, object]):
    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.lines: dict[str, int] = {}


class Seq(list[object]):
    def __init__(self, items: Iterable[object] = ()) -> None:
        super().__init__(items)
        self.line = 0
        self.lines: list[int] = []


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Map:
    loader.flatten_mapping(node)
    result = Map()
    result.line, result.lines = node.start_mark.line + 1, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise _Problem(line, f"key {key!r} must be a string")
        if key in result:
            raise _Problem(line, f"duplicate key {key!r}")
        result[key] = loader.construct_object(value_node, deep=True)
        result.lines[key] = line
    return result


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> Seq:
    result = Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line, result.lines = node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


class _Problem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


# --- validation --------------------------------------------------------------------------------


class Checker:
    """Walks the loaded document, collecting every problem with its line."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def fail(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def mapping(self, value: object, line: int, where: str, allowed: set[str], required: set[str]) -> Map | None:
        if not isinstance(value, Map):
            self.fail(line, f"{where} must be a mapping")
            return None
        for key in value:
            if key not in allowed:
                close = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else f" (allowed: {', '.join(sorted(allowed))})"
                self.fail(value.lines[key], f"unknown key {key!r} in {where}{hint}")
        for key in sorted(required - value.keys()):
            self.fail(value.line, f"{where} is missing required key {key!r}")
        return value

    def string(self, m: Map, key: str, where: str, pattern: re.Pattern[str] | None = None,
               what: str = "") -> str | None:
        if key not in m:
            return None
        value = m[key]
        if not isinstance(value, str) or not value:
            hint = " (quote it)" if isinstance(value, int | float) else ""
            self.fail(m.lines[key], f"{where}.{key} must be a non-empty string{hint}")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(m.lines[key], f"{where}.{key} {value!r} is not {what}")
            return None
        return value

    def strings(self, m: Map, key: str, where: str, pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
        """A list of strings each matching `pattern` (absent: empty); each other item is a problem."""
        found = []
        for item, line in self.sequence(m, key, where):
            if not isinstance(item, str) or not pattern.match(item):
                self.fail(line, f"{where}.{key}: {item!r} is not {what}")
            else:
                found.append(item)
        return tuple(found)

    def pattern(self, m: Map, key: str, where: str) -> str | None:
        """A regular expression (absent: None; one that does not compile is a problem)."""
        value = self.string(m, key, where)
        if value is None:
            return None
        try:
            re.compile(value)
        except re.error as exc:
            self.fail(m.lines[key], f"{where}.{key} is not a regular expression ({exc})")
            return None
        return value

    def items(self, value: object, line: int, where: str, what: str) -> list[tuple[object, int, str]]:
        """Each item of a list (its line, and its place for messages: `where[i]`); not a list: a problem."""
        if not isinstance(value, Seq):
            self.fail(line, f"{where} must be a list of {what}")
            return []
        return [(item, item_line, f"{where}[{index}]")
                for index, (item, item_line) in enumerate(zip(value, value.lines, strict=True))]

    def sequence(self, m: Map, key: str, where: str) -> list[tuple[object, int]]:
        if key not in m or m[key] is None:
            return []
        value = m[key]
        if not isinstance(value, Seq):
            self.fail(m.lines[key], f"{where}.{key} must be a list")
            return []
        return list(zip(value, value.lines, strict=True))


def _registry(check: Checker, item: object, line: int, where: str) -> RegistrySpec | None:
    allowed = {"host", "usernameEnv", "passwordEnv", "plainHttp", "caFile"}
    m = check.mapping(item, line, where, allowed, {"host"})
    if m is None:
        return None
    host = check.string(m, "host", where)
    user = check.string(m, "usernameEnv", where, ENV_NAME_RE, "an environment variable name")
    password = check.string(m, "passwordEnv", where, ENV_NAME_RE, "an environment variable name")
    if ("usernameEnv" in m) != ("passwordEnv" in m):
        check.fail(m.line, f"{where}: usernameEnv and passwordEnv go together")
    plain = m.get("plainHttp")
    if plain is not None and not isinstance(plain, bool):
        check.fail(m.lines["plainHttp"], f"{where}.plainHttp must be true or false")
        plain = None
    ca_file = check.string(m, "caFile", where)
    if host is None:
        return None
    return RegistrySpec(host, user, password, plain, ca_file)


def _items(check: Checker, spec: Map, key: str,
           build: Callable[[Checker, object, int, str], T | None]) -> list[tuple[T, int]]:
    """Each valid item of `spec.<key>`, with its line."""
    out = []
    for index, (item, line) in enumerate(check.sequence(spec, key, "spec")):
        value = build(check, item, line, f"spec.{key}[{index}]")
        if value is not None:
            out.append((value, line))
    return out


class SpecRole(Protocol):
    """A kind's build role, as the profile uses it: parse its own `spec.<key>` and settings."""

    @property
    def settings(self) -> tuple[str, ...]: ...

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> object | None: ...

    def check_specs(self, check: Checker, specs: Sequence[tuple[object, int]], line: int) -> None: ...

    def parse_setting(self, check: Checker, key: str, value: object, line: int) -> object: ...


class SpecKind(Protocol):
    """What the profile reads of a content kind: its key and its build role."""

    @property
    def key(self) -> str: ...

    @property
    def build(self) -> SpecRole: ...


def parse_profile(text: str, path: str = "<profile>", *, kinds: Sequence[SpecKind]) -> Profile:
    """Validate a profile's text; raise ProfileError listing every problem as `path:line: message`.
    Each of `kinds` (the registered ones: bundler.kinds.KINDS) parses its own `spec.<key>`."""
    check = Checker()
    try:
        doc = yaml.load(text, Loader=_Loader)
    except _Problem as exc:
        raise ProfileError(f"{path}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else 1
        raise ProfileError(f"{path}:{line}: not valid YAML: {exc.problem}") from None
    top = check.mapping(doc, 1, "the profile", {"apiVersion", "kind", "metadata", "spec"},
                        {"apiVersion", "kind", "metadata", "spec"})
    name = version = None
    description = ""
    expires = None
    specs: dict[str, tuple[object, ...]] = {}
    settings: dict[str, object] = {}
    registries: list[RegistrySpec] = []
    if top is not None:
        if "apiVersion" in top and top["apiVersion"] != API_VERSION:
            check.fail(top.lines["apiVersion"], f"apiVersion must be {API_VERSION!r}, not {top['apiVersion']!r}")
        if "kind" in top and top["kind"] != KIND:
            check.fail(top.lines["kind"], f"kind must be {KIND!r}, not {top['kind']!r}")
        meta = top.get("metadata")
        if "metadata" in top:
            m = check.mapping(meta, top.lines["metadata"], "metadata",
                              {"name", "version", "description", "expires"}, {"name", "version"})
            if m is not None:
                name = check.string(m, "name", "metadata", NAME_RE,
                                    "a valid name (lowercase letters, digits, . _ -; at most 64)")
                version = check.string(m, "version", "metadata", SEMVER_RE, "a semantic version (e.g. 1.4.0)")
                description = check.string(m, "description", "metadata") or ""
                duration = check.string(m, "expires", "metadata", DURATION_RE,
                                        "a duration: a number and h, d or w (e.g. 72h, 90d, 12w)")
                if duration is not None and (found := DURATION_RE.match(duration)):
                    expires = int(found[1]) * DURATION_UNITS[found[2]]
        if "spec" in top:
            raw_spec = Map() if top["spec"] is None else top["spec"]
            allowed = {*(k.key for k in kinds), *(s for k in kinds for s in k.build.settings), "registries"}
            spec = check.mapping(raw_spec, top.lines["spec"], "spec", allowed, set())
            if spec is not None:
                for kind in kinds:
                    for key in kind.build.settings:
                        if key in spec:
                            settings[key] = kind.build.parse_setting(check, key, spec[key], spec.lines[key])
                    items = _items(check, spec, kind.key, kind.build.parse_spec)
                    kind.build.check_specs(check, items, spec.lines.get(kind.key, 0))
                    specs[kind.key] = tuple(item for item, _ in items)
                registries = [item for item, _ in _items(check, spec, "registries", _registry)]
    if check.problems:
        raise ProfileError("\n".join(f"{path}:{line}: {msg}" for line, msg in sorted(check.problems)),
                           hint="fix the profile; see docs/reference.md, 'Profile reference'")
    assert name is not None and version is not None
    return Profile(
        name=name, version=version, description=description, expires=expires, specs=specs, settings=settings,
        registries=tuple(registries), path=path, digest=sha256_digest(text.encode()),
    )


def load_profile(path: str | Path, *, kinds: Sequence[SpecKind]) -> Profile:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise ProfileError(f"cannot read profile {p}: {exc.strerror}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise ProfileError(f"{p}: profile is larger than {MAX_PROFILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ProfileError(f"{p}: profile is not UTF-8 text") from None
    return parse_profile(text, str(p), kinds=kinds)
