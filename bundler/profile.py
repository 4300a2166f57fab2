"""Profiles: what a bundle holds. YAML in, frozen dataclasses out, every problem with file:line.

What users write is validated strictly: an unknown key is an error (with a suggestion), never ignored.
"""

from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bundler.errors import ProfileError
from bundler.names import CHART_NAME_RE, GROUP_RE, NAME_RE, PLATFORM_RE, REPO_NAME_RE, SHA256_RE, UPDATE_NAME_RE
from bundler.oci.reference import DaemonReference, ImageReference, ReferenceError, parse_any
from bundler.versions import SEMVER_RE, VersionRange

API_VERSION = "bundler/v1"
KIND = "Profile"

ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
REF_PATTERN_RE = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/*-]+(?<!/)(?<!\.lock)$")
DURATION_RE = re.compile(r"^([1-9][0-9]{0,5})([hdw])$")
DURATION_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1)}
MAX_PROFILE_BYTES = 1 << 20


@dataclass(frozen=True)
class ImageSpec:
    """One image to carry. `platforms` empty means: keep a multi-arch index whole."""

    ref: ImageReference | DaemonReference
    platforms: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return str(self.ref)


@dataclass(frozen=True)
class ChartSpec:
    """A Helm chart: from a classic repository (`repo`, `name`, `version` exact or a range) or an OCI
    registry (`ref`, oci://host/path/name:version)."""

    repo: str | None = None
    name: str | None = None
    version: VersionRange | None = None
    ref: ImageReference | None = None
    dependencies: bool = False  # also collect the dependencies it does not vendor
    images: bool = False  # `images: auto`: also collect the images it declares

    @property
    def text(self) -> str:
        return f"oci://{self.ref}" if self.ref else f"{self.repo} {self.name} {self.version}"


@dataclass(frozen=True)
class RepoSpec:
    """A Git repository: any URL git can fetch; `refs` are branch and tag names, `*` globs allowed."""

    url: str
    name: str
    refs: tuple[str, ...] = ()  # empty: every branch and tag


UPDATE_KINDS = ("deb", "rpm", "msu", "cab", "vm-image", "file")
VM_IMAGE_SUFFIXES = (".qcow2", ".vhdx", ".vhd", ".vmdk", ".img", ".raw", ".iso", ".ova")


def update_kind(file_name: str) -> str:
    """deb, rpm, msu, cab, vm-image or file, from a file name."""
    lower = file_name.lower()
    for kind in ("deb", "rpm", "msu", "cab"):
        if lower.endswith(f".{kind}"):
            return kind
    return "vm-image" if lower.endswith(VM_IMAGE_SUFFIXES) else "file"


@dataclass(frozen=True)
class UpdateSpec:
    """An OS or VM update: a file by URL (with its sha256) or by path on this machine."""

    kind: str
    url: str | None = None
    path: str | None = None
    sha256: str | None = None
    name: str | None = None  # default: the package name (deb, rpm) or the file name
    metadata: tuple[tuple[str, str], ...] = ()
    approve: tuple[str, ...] = ()  # target groups it is approved for on arrival

    @property
    def source(self) -> str:
        return self.url or self.path or ""


@dataclass(frozen=True)
class RegistrySpec:
    """How to reach one source registry. Secrets are named by environment variable, never inline."""

    host: str
    username_env: str | None = None
    password_env: str | None = None
    plain_http: bool | None = None
    ca_file: str | None = None


@dataclass(frozen=True)
class Profile:
    name: str
    version: str
    description: str
    expires: dt.timedelta | None  # how long a bundle built from this profile is valid
    images: tuple[ImageSpec, ...]
    charts: tuple[ChartSpec, ...]
    repos: tuple[RepoSpec, ...]
    updates: tuple[UpdateSpec, ...]
    registries: tuple[RegistrySpec, ...]
    path: str
    digest: str

    def registry(self, host: str) -> RegistrySpec | None:
        return next((r for r in self.registries if r.host == host), None)


# --- YAML with line numbers -------------------------------------------------------------------


class _Map(dict[str, Any]):
    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.lines: dict[str, int] = {}


class _Seq(list[Any]):
    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.line = 0
        self.lines: list[int] = []


class _Loader(yaml.SafeLoader):
    pass


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
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


def _construct_seq(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    result.line, result.lines = node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value]
    return result


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


class _Problem(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


# --- validation --------------------------------------------------------------------------------


class _Checker:
    """Walks the loaded document, collecting every problem with its line."""

    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def fail(self, line: int, message: str) -> None:
        self.problems.append((line, message))

    def mapping(self, value: Any, line: int, where: str, allowed: set[str], required: set[str]) -> _Map | None:
        if not isinstance(value, _Map):
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

    def string(self, m: _Map, key: str, where: str, pattern: re.Pattern[str] | None = None,
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

    def sequence(self, m: _Map, key: str, where: str) -> list[tuple[Any, int]]:
        if key not in m or m[key] is None:
            return []
        value = m[key]
        if not isinstance(value, _Seq):
            self.fail(m.lines[key], f"{where}.{key} must be a list")
            return []
        return list(zip(value, value.lines, strict=True))


def _image(check: _Checker, item: Any, line: int, where: str) -> ImageSpec | None:
    platforms: tuple[str, ...] = ()
    if isinstance(item, _Map):
        m = check.mapping(item, line, where, {"ref", "platforms"}, {"ref"})
        if m is None or "ref" not in m:
            return None
        text = check.string(m, "ref", where)
        line = m.lines.get("ref", line)
        collected = []
        for platform, pline in check.sequence(m, "platforms", where):
            if not isinstance(platform, str) or not PLATFORM_RE.match(platform):
                check.fail(pline, f"{where}.platforms: {platform!r} is not os/arch[/variant] (e.g. linux/arm64/v8)")
            else:
                collected.append(platform)
        platforms = tuple(collected)
    elif isinstance(item, str):
        text = item
    else:
        check.fail(line, f"{where} must be an image reference string or a mapping with 'ref'")
        return None
    if text is None:
        return None
    try:
        ref = parse_any(text)
    except ReferenceError as exc:
        check.fail(line, f"{where}: {exc}")
        return None
    if platforms and isinstance(ref, DaemonReference):
        check.fail(line, f"{where}: platforms cannot be selected for a docker-daemon image (it has one)")
    return ImageSpec(ref=ref, platforms=platforms)


def _chart(check: _Checker, item: Any, line: int, where: str) -> ChartSpec | None:
    m = check.mapping(item, line, where, {"repo", "name", "version", "ref", "dependencies", "images"}, set())
    if m is None:
        return None
    if "dependencies" in m and not isinstance(m["dependencies"], bool):
        check.fail(m.lines["dependencies"], f"{where}.dependencies must be true or false")
    if "images" in m and m["images"] != "auto":
        check.fail(m.lines["images"], f"{where}.images must be 'auto' (collect the images the chart declares)")
    dependencies, images = m.get("dependencies") is True, m.get("images") == "auto"
    if ("repo" in m) == ("ref" in m):
        check.fail(m.line, f"{where} needs either repo (with name and version) or ref (oci://...), not both")
        return None
    if "ref" in m:
        for key in ("name", "version"):
            if key in m:
                check.fail(m.lines[key], f"{where}.{key} goes with repo; an OCI chart's ref names it "
                                         "(oci://host/path/name:version)")
        text = check.string(m, "ref", where)
        if text is None:
            return None
        if not text.startswith("oci://"):
            check.fail(m.lines["ref"], f"{where}.ref {text!r} must start with oci://")
            return None
        try:
            ref = ImageReference.parse(text.removeprefix("oci://"))
        except ReferenceError as exc:
            check.fail(m.lines["ref"], f"{where}.ref: {exc}")
            return None
        if ref.tag == "latest" and ":latest" not in text:
            check.fail(m.lines["ref"], f"{where}.ref {text!r} needs the chart version as its tag (…/name:1.2.3)")
            return None
        return ChartSpec(ref=ref, dependencies=dependencies, images=images)
    repo = check.string(m, "repo", where, URL_RE, "an http(s) URL of a chart repository")
    for key in ("name", "version"):
        if key not in m:
            check.fail(m.line, f"{where} is missing required key {key!r}")
    name = check.string(m, "name", where, CHART_NAME_RE, "a chart name")
    version_text = m.get("version")
    if isinstance(version_text, int | float):
        version_text = str(version_text)
    version = None
    if "version" in m:
        try:
            version = VersionRange(str(version_text or ""))
        except ValueError as exc:
            check.fail(m.lines["version"],
                       f"{where}.version: {exc} (an exact version or a range like '>=18.0.0 <19.0.0')")
    if repo is None or name is None or version is None:
        return None
    return ChartSpec(repo=repo.rstrip("/"), name=name, version=version, dependencies=dependencies, images=images)


def _repo(check: _Checker, item: Any, line: int, where: str) -> RepoSpec | None:
    m = check.mapping(item, line, where, {"url", "name", "refs"}, {"url"})
    if m is None:
        return None
    url = check.string(m, "url", where)
    name = check.string(m, "name", where, REPO_NAME_RE, "a repository name (letters, digits, . _ -)")
    refs = []
    for ref, rline in check.sequence(m, "refs", where):
        if not isinstance(ref, str) or not REF_PATTERN_RE.match(ref):
            check.fail(rline, f"{where}.refs: {ref!r} is not a branch or tag name (globs with * allowed)")
        else:
            refs.append(ref)
    if url is None:
        return None
    if name is None and "name" not in m:
        name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
        if not REPO_NAME_RE.match(name):
            check.fail(m.lines["url"], f"{where}: cannot derive a name from {url!r}; give one with name:")
            return None
    return RepoSpec(url, name, tuple(refs)) if name else None


def _update(check: _Checker, item: Any, line: int, where: str) -> UpdateSpec | None:
    m = check.mapping(item, line, where, {"name", "kind", "url", "path", "sha256", "metadata", "approve"}, set())
    if m is None:
        return None
    if ("url" in m) == ("path" in m):
        check.fail(m.line, f"{where} needs either url (with sha256) or path")
        return None
    url = check.string(m, "url", where, URL_RE, "an http(s) URL")
    path = check.string(m, "path", where)
    sha256 = check.string(m, "sha256", where, SHA256_RE, "a sha256 (64 lowercase hex digits)")
    if url is not None and "sha256" not in m:
        check.fail(m.lines["url"], f"{where}: a download needs its sha256 (checked before anything is kept)")
    name = check.string(m, "name", where, UPDATE_NAME_RE, "an update name (letters, digits, . _ + -)")
    kind = m.get("kind")
    if kind is not None and kind not in UPDATE_KINDS:
        check.fail(m.lines["kind"], f"{where}.kind {kind!r} is not one of {', '.join(UPDATE_KINDS)}")
    metadata = m.get("metadata") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str | int | float) for v in metadata.values()):
        check.fail(m.lines.get("metadata", m.line), f"{where}.metadata must map names to strings")
        metadata = {}
    groups = []
    for group, gline in check.sequence(m, "approve", where):
        if not isinstance(group, str) or not GROUP_RE.match(group):
            check.fail(gline, f"{where}.approve: {group!r} is not a group name (letters, digits, . _ -)")
        else:
            groups.append(group)
    source = url or path
    if source is None:
        return None
    file_name = source.rstrip("/").rsplit("/", 1)[-1]
    return UpdateSpec(str(kind) if kind in UPDATE_KINDS else update_kind(file_name), url, path, sha256, name,
                      tuple((str(k), str(v)) for k, v in metadata.items()), tuple(groups))


def _registry(check: _Checker, item: Any, line: int, where: str) -> RegistrySpec | None:
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


def _items(check: _Checker, spec: _Map, key: str, build: Callable[[_Checker, Any, int, str], Any]) -> list[Any]:
    out = []
    for index, (item, line) in enumerate(check.sequence(spec, key, "spec")):
        value = build(check, item, line, f"spec.{key}[{index}]")
        if value is not None:
            out.append(value)
    return out


def parse_profile(text: str, path: str = "<profile>") -> Profile:
    """Validate a profile's text; raise ProfileError listing every problem as `path:line: message`."""
    check = _Checker()
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
    images: list[ImageSpec] = []
    charts: list[ChartSpec] = []
    repos: list[RepoSpec] = []
    updates: list[UpdateSpec] = []
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
            raw_spec = _Map() if top["spec"] is None else top["spec"]
            spec = check.mapping(raw_spec, top.lines["spec"], "spec",
                                 {"images", "charts", "repos", "updates", "registries"}, set())
            if spec is not None:
                images = _items(check, spec, "images", _image)
                charts = _items(check, spec, "charts", _chart)
                repos = _items(check, spec, "repos", _repo)
                updates = _items(check, spec, "updates", _update)
                names = [r.name for r in repos]
                for duplicate in sorted({n for n in names if names.count(n) > 1}):
                    check.fail(spec.lines["repos"], f"two repos are named {duplicate!r}; give one a different name:")
                registries = _items(check, spec, "registries", _registry)
                seen: dict[str, int] = {}
                for image, (_, line) in zip(images, check.sequence(spec, "images", "spec"), strict=False):
                    if image.text in seen:
                        check.fail(line, f"image {image.text} is listed twice (first on line {seen[image.text]})")
                    seen.setdefault(image.text, line)
    if check.problems:
        raise ProfileError("\n".join(f"{path}:{line}: {msg}" for line, msg in sorted(check.problems)),
                           hint="fix the profile; see README.md, 'Profile reference'")
    assert name is not None and version is not None
    return Profile(
        name=name, version=version, description=description, expires=expires, images=tuple(images),
        charts=tuple(charts), repos=tuple(repos), updates=tuple(updates),
        registries=tuple(registries), path=path, digest="sha256:" + hashlib.sha256(text.encode()).hexdigest(),
    )


def load_profile(path: str | Path) -> Profile:
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
    return parse_profile(text, str(p))
