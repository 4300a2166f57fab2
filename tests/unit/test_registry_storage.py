"""The site's registry storage, written directly (bundler/site/registry_storage.py): every file is
on the disk before its name is, as Distribution's own driver writes them. A power cut cannot be
made to happen here, so the order of the real calls is watched instead: each fsync of a file
before the rename that gives it its name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bundler import fsutil
from bundler.pipeline.setup import create_site
from bundler.signing import generate_key, public_pem
from bundler.site.registry_storage import RegistryStorage


@pytest.fixture
def storage(tmp_path: Path) -> RegistryStorage:
    trust = tmp_path / "release.pub"
    trust.write_bytes(public_pem(generate_key().public_key()))
    site = create_site(tmp_path / "site", None, [trust], 1, name="store-1", http_listen="127.0.0.1:1",
                       registry_listen="127.0.0.1:2")
    made = RegistryStorage.of(site)
    assert made is not None  # the default site: its own registry, on its disk
    return made


def watch_syncs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The real os.fsync and os.replace, each call noted in order: ("fsync", path), ("replace", source)."""
    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def noted_fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def noted_replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        calls.append(("replace", os.fspath(source)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", noted_fsync)
    monkeypatch.setattr(os, "replace", noted_replace)
    return calls


def test_a_blob_and_its_link_are_synced_before_they_are_named(storage: RegistryStorage,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 << 20)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    calls = watch_syncs(monkeypatch)
    storage.write(digest, [data[:1 << 20], data[1 << 20:]])
    assert storage.link("store/app", digest)
    renamed = [source for call, source in calls if call == "replace"]
    assert len(renamed) == 2  # the data file, then the link file
    for source in renamed:
        assert calls.index(("fsync", source)) < calls.index(("replace", source)), calls
    assert storage.data(digest).read_bytes() == data
    assert storage.link_file("store/app", digest).read_text() == digest
    assert storage.linked("store/app", digest, len(data))


def test_a_data_file_of_the_wrong_length_is_not_the_blob(storage: RegistryStorage) -> None:
    """What a power cut leaves of a file written without a sync: the name, and fewer bytes."""
    data = os.urandom(1 << 20)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    storage.write(digest, [data])
    storage.link("store/app", digest)
    assert storage.has(digest, len(data)) and storage.linked("store/app", digest, len(data))
    os.truncate(storage.data(digest), 4096)
    assert storage.has(digest)  # there, by name
    assert not storage.has(digest, len(data)) and not storage.linked("store/app", digest, len(data))
    storage.write(digest, [data])  # written again, whole
    assert storage.data(digest).read_bytes() == data


def test_a_large_blob_goes_to_the_disk_while_it_is_copied(storage: RegistryStorage,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Each WRITEBACK_STEP written is handed to the disk at once (not waited for), in order, so the
    fsync that commits the blob waits for the tail alone; Linux's sync_file_range is what does it."""
    start = fsutil._start_writeback()
    assert start is not None  # found in the C library: the copy does not wait for the whole file at the end
    handed: list[tuple[int, int]] = []

    def noted(fd: int, offset: int, length: int) -> None:
        handed.append((offset, length))
        start(fd, offset, length)

    monkeypatch.setattr(fsutil, "_start_writeback", lambda: noted)
    data = os.urandom(3 * fsutil.WRITEBACK_STEP + 12345)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    storage.write(digest, [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    assert handed == [(i * fsutil.WRITEBACK_STEP, fsutil.WRITEBACK_STEP) for i in range(3)]
    assert storage.data(digest).read_bytes() == data
