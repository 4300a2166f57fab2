"""The embedded registry's storage, written directly: Distribution's filesystem layout, for an import
at the medium's speed (each blob read once from the bundle, hashed as it is copied, committed by
rename; no HTTP upload, no second hash in the registry). Only the site's own registry on the site's
disk: a registry that is not the site's, or one on object storage, keeps the API path.

    <root>/docker/registry/v2/blobs/sha256/<2 hex>/<hex>/data            a blob's bytes
    <root>/docker/registry/v2/repositories/<repo>/_layers/sha256/<hex>/link   "sha256:<hex>": the repo links it
    <root>/docker/registry/v2/repositories/<repo>/_manifests/revisions/sha256/<hex>/link   a manifest it holds
    <root>/docker/registry/v2/repositories/<repo>/_manifests/tags/<tag>/current/link      the digest a tag names

What the repositories hold is read here too (a manifest, a tag), instead of a HEAD request each.
A blob's data file is invisible to clients until a repository links it; links are written at
publication, after every byte of the bundle verified; manifests and tags still go through the
registry's API, last. A refused import leaves data files nothing links: the registry's garbage
collector frees them at the next prune (they are recorded as the quarantine's were).

Every file is on the disk before anything names it, as Distribution's own filesystem driver writes
its files (each one synced as it is committed): a data file is synced before its rename, a link file
before the registry is asked for a manifest that needs it. Without that, a power cut in the seconds
after an import (the kernel writes dirty pages back some 30 s later) leaves data files of zero or
part of their length under manifests and links the registry had synced: pulls fail until someone
notices. A data file whose length is not its blob's (one an older bundler wrote without syncing) is
not trusted: it is written again. The partial files of an import killed while it copied are removed
by the next import's first write and by a prune (both under the import lock).

The import runs as root: every directory on the way from the site directory to a file it writes is
opened without following a symbolic link (openat, O_NOFOLLOW), so a link planted in the storage
(`blobs/sha256/ab -> /etc`) is a refusal naming it, and nothing is written outside the site.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import atomic_write_at, own_like_directory, write_synced
from bundler.site.config import REGISTRY_DIR, REGISTRY_STORAGE, SiteConfig

V2 = "docker/registry/v2"
INCOMING = f"{REGISTRY_DIR}/incoming"  # beside the storage root, on its filesystem: partial blobs, renamed into place


DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class PlantedLink(BundlerError):
    """A symbolic link (or another file) where the registry's storage has a directory."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"the registry's storage holds a symbolic link or a file where a directory belongs: {path}; "
                         "the import refused to write through it (nothing was written outside the site, nothing "
                         "was published)", hint=f"look at it (`ls -l {path}`), remove it, then run the same "
                                                "command again")


class RegistryStorage:
    def __init__(self, site: SiteConfig) -> None:
        self.site_directory = site.directory
        self.root = site.directory / REGISTRY_STORAGE / V2
        self.incoming = site.directory / INCOMING
        self._ready = False
        self._lock = threading.Lock()

    @classmethod
    def of(cls, site: SiteConfig) -> RegistryStorage | None:
        """The site's registry storage when bundler may write it: its own registry, on its disk."""
        return cls(site) if site.embedded_registry and not site.registry.storage else None

    def data(self, digest: str) -> Path:
        hex_digest = digest.removeprefix("sha256:")
        return self.root / "blobs" / "sha256" / hex_digest[:2] / hex_digest / "data"

    def link_file(self, repo: str, digest: str) -> Path:
        return self.root / "repositories" / repo / "_layers" / "sha256" / digest.removeprefix("sha256:") / "link"

    def has(self, digest: str, size: int | None = None) -> bool:
        """The blob's data file is there (with `size`: and has that many bytes)."""
        try:
            st = os.stat(self.data(digest))
        except (FileNotFoundError, NotADirectoryError):
            return False
        return stat.S_ISREG(st.st_mode) and (size is None or st.st_size == size)

    def linked(self, repo: str, digest: str, size: int) -> bool:
        return self.link_file(repo, digest).is_file() and self.has(digest, size)

    def manifest(self, repo: str, reference: str) -> str | None:
        """The digest the repository holds under a tag or a digest, as the registry's HEAD would
        answer it; None when it holds none (a tag whose manifest is gone: none)."""
        manifests = self.root / "repositories" / repo / "_manifests"
        if reference.startswith("sha256:"):
            digest = reference
        else:
            try:
                digest = (manifests / "tags" / reference / "current" / "link").read_text().strip()
            except (FileNotFoundError, NotADirectoryError):
                return None
        revision = manifests / "revisions" / "sha256" / digest.removeprefix("sha256:") / "link"
        return digest if revision.is_file() and self.has(digest) else None

    def write(self, digest: str, size: int, chunks: Iterable[bytes]) -> None:
        """Copy a blob of `size` bytes into place from chunks its reader verifies as they pass
        (bundle.verify's verified_chunks: the one hash of its bytes, which raises before the last
        chunk when they are not the digest's); synced, then committed by rename, only once every
        chunk came, else nothing stays."""
        with self._lock:  # the first of the transfer's threads to come
            if not self._ready:
                self.discard_partials()  # under the import lock: a killed import's (its blob is written again)
                os.close(self._directory(self.root / "repositories"))  # the collector walks it once a blob is
                self._ready = True
        name = f"{digest.removeprefix('sha256:')}.{os.getpid()}.partial"
        incoming = self._directory(self.incoming)
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=incoming)
            try:
                with os.fdopen(fd, "wb") as out:
                    write_synced(out, chunks, size)  # on the disk before its name is: see the module's docstring
                    os.fchmod(out.fileno(), 0o644)
                    own_like_directory(out.fileno(), incoming)
                leaf = self._directory(self.data(digest).parent)
                try:
                    os.replace(name, "data", src_dir_fd=incoming, dst_dir_fd=leaf)
                finally:
                    os.close(leaf)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=incoming)
        finally:
            os.close(incoming)

    def partials(self) -> dict[Path, int]:
        """What imports killed while they copied left (partial data files, never renamed into place),
        each with its size; one that goes meanwhile (an import running beside `site status`) is not
        counted."""
        found: dict[Path, int] = {}
        try:
            entries = list(os.scandir(self.incoming))
        except FileNotFoundError:
            return found
        for entry in entries:
            if entry.name.endswith(".partial"):
                with contextlib.suppress(FileNotFoundError):
                    found[Path(entry.path)] = entry.stat(follow_symlinks=False).st_size
        return found

    def discard_partials(self) -> None:
        """Remove the partial files (call it under the import lock: else an import's own could go),
        in the incoming directory opened without following a link, made (0700) when missing."""
        incoming = self._directory(self.incoming, mode=0o700)
        try:
            for entry in os.scandir(incoming):
                if entry.name.endswith(".partial"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.name, dir_fd=incoming)
        finally:
            os.close(incoming)

    def link(self, repo: str, digest: str) -> bool:
        """Link a blob into a repository (what the registry's mount writes); False when it was."""
        path = self.link_file(repo, digest)
        if path.is_file():
            return False
        leaf = self._directory(path.parent)
        try:
            atomic_write_at(leaf, "link", digest.encode())  # synced, as the registry's mount writes it
        finally:
            os.close(leaf)
        return True

    def _directory(self, path: Path, mode: int = 0o755) -> int:
        """An open descriptor of `path` (a directory under the site's), each directory on the way from
        the site's opened without following a link, made when missing and owned by the site's owner
        (not "like its parent": a parallel link may make a child before its parent was given away,
        and a root-owned repository directory is one the registry, run as the site's user, cannot
        write its manifests into)."""
        site = os.open(self.site_directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # whose the site is
        fd = os.dup(site)
        here = self.site_directory
        try:
            for name in path.relative_to(self.site_directory).parts:
                here = here / name
                try:
                    child = os.open(name, DIRECTORY, dir_fd=fd)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, mode if here == path else 0o755, dir_fd=fd)
                    child = os.open(name, DIRECTORY, dir_fd=fd)
                    own_like_directory(child, site)
                except OSError as exc:
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link, or a file, where a directory goes
                        raise PlantedLink(here) from None
                    raise
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(site)
        return fd
