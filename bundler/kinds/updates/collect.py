"""OS and VM updates: files by URL (downloaded, their sha256 checked before anything is kept) or by
path. Debian and RPM packages are read for their name, version and architecture (and a .deb's whole
control stanza, so the site can publish an apt index without dpkg)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import requests

from bundler import debcontrol, tools
from bundler.errors import IntegrityError, UsageError
from bundler.fsutil import file_sha256
from bundler.kinds.updates.entry import UpdateEntry
from bundler.kinds.updates.spec import UpdateSpec
from bundler.retry import download_file


@dataclass(frozen=True)
class CollectedUpdate:
    """An update collected: its entry and its payload staged on disk."""
    entry: UpdateEntry
    staged: Path  # the payload on this machine (a download, or the profile's own path)


def package_metadata(kind: str, path: Path, origin: str) -> dict[str, str]:
    """name, version, arch (and a .deb's control stanza) read from the package itself."""
    if kind == "deb":
        proc = tools.run([tools.find("dpkg-deb", "dpkg", "to read .deb packages"), "--field", path])
        control = proc.stdout.decode(errors="replace").strip("\n")
        if proc.returncode != 0 or not control.strip():
            raise IntegrityError(f"{origin} is not a valid .deb package: {tools.last_words(proc, 200)}")
        try:
            fields = debcontrol.parse(control)
        except ValueError as exc:
            raise IntegrityError(f"{origin}: its control file is not one valid stanza: {exc}") from None
        return {"package": debcontrol.value(fields, "Package"), "version": debcontrol.value(fields, "Version"),
                "arch": debcontrol.value(fields, "Architecture"), "control": control}
    if kind == "rpm":
        query = "%{NAME}\\n%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\\n%{ARCH}\\n"  # [epoch:]version-release
        proc = tools.run([tools.find("rpm", "rpm", "to read .rpm packages"), "-qp", "--nosignature", "--nodigest",
                          "--qf", query, path])
        lines = proc.stdout.decode(errors="replace").splitlines()
        if proc.returncode != 0 or len(lines) < 3:
            raise IntegrityError(f"{origin} is not a valid .rpm package: {tools.last_words(proc, 200)}")
        return {"package": lines[0], "version": lines[1], "arch": lines[2]}
    return {}


def collect_update(spec: UpdateSpec, staging: Path, base: Path, session: requests.Session) -> CollectedUpdate:
    if spec.url is not None:
        file_name = spec.url.rstrip("/").rsplit("/", 1)[-1] or "download"
        staged = staging / f"update-{hashlib.sha256(spec.url.encode()).hexdigest()[:16]}"
        sha256, size = download_file(session, spec.url, staged, f"update {file_name}")
        origin = spec.url
    else:
        assert spec.path is not None
        staged = (base / spec.path).resolve()
        if not staged.is_file():
            raise UsageError(f"update {spec.path}: no such file ({staged})")
        file_name, origin = staged.name, str(staged)
        sha256, size = file_sha256(staged)
    if spec.sha256 is not None and sha256 != spec.sha256:
        if spec.url is not None:
            staged.unlink(missing_ok=True)
        raise IntegrityError(f"update {origin}: sha256 is {sha256}, the profile says {spec.sha256}",
                             hint="the file changed or the profile's sha256 is wrong; nothing was kept")
    metadata = {**package_metadata(spec.kind, staged, origin), **dict(spec.metadata)}
    name = spec.name or metadata.get("package") or file_name
    return CollectedUpdate(UpdateEntry(name, spec.kind, file_name, sha256, size, metadata, spec.approve, spec.windows),
                           staged)
