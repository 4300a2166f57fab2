"""`spec.updates` in a profile: OS and VM update files, by URL (with their sha256) or by path, with
optional metadata, the groups they are approved for on arrival, and for Windows payloads what they
say about themselves (`windows:`, windows.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bundler.kinds.updates.entry import UPDATE_KINDS
from bundler.kinds.updates.windows import AKSEE, WindowsInfo, check_requirements, parse_windows
from bundler.names import GROUP_RE, SHA256_RE, UPDATE_NAME_RE
from bundler.profile import URL_RE, Checker

AKSEE_FILE_RE = re.compile(r"^akswindows[^/]*\.exe$", re.IGNORECASE)  # "AKS-EE Windows Fragment" files
VM_IMAGE_SUFFIXES = (".qcow2", ".vhdx", ".vhd", ".vmdk", ".img", ".raw", ".iso", ".ova")


def update_kind(file_name: str) -> str:
    """deb, rpm, msu, cab, msi, aksee-fragment, vm-image or file, from a file name."""
    lower = file_name.lower()
    if AKSEE_FILE_RE.match(file_name):
        return AKSEE
    for kind in ("deb", "rpm", "msu", "cab", "msi"):
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
    windows: WindowsInfo | None = None

    @property
    def display_name(self) -> str:
        """Its name as requirements name it: `name`, else the file name (a package's name is known
        only once collected, so a requirement names a Windows payload by `name` or file name)."""
        return self.name or self.source.rstrip("/").rsplit("/", 1)[-1]

    @property
    def source(self) -> str:
        return self.url or self.path or ""


def parse_update(check: Checker, item: object, line: int, where: str) -> UpdateSpec | None:
    m = check.mapping(item, line, where, {"name", "kind", "url", "path", "sha256", "metadata", "approve", "windows"},
                      set())
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
    groups = check.strings(m, "approve", where, GROUP_RE, "a group name (letters, digits, . _ -)")
    source = url or path
    if source is None:
        return None
    file_name = source.rstrip("/").rsplit("/", 1)[-1]
    kind = str(kind) if kind in UPDATE_KINDS else update_kind(file_name)
    return UpdateSpec(kind, url, path, sha256, name, tuple((str(k), str(v)) for k, v in metadata.items()),
                      tuple(groups), parse_windows(check, m, kind, where))


def check_updates(check: Checker, specs: Sequence[tuple[UpdateSpec, int]], line: int) -> None:
    """Across a profile's updates: what a Windows payload requires is one of them, with no cycle."""
    check_requirements(check, [(spec.display_name, spec.windows, item_line) for spec, item_line in specs], line)
