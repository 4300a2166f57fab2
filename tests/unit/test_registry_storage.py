"""The site's registry storage, written directly (bundler/site/registry_storage.py): every file is
on the disk before its name is, as Distribution's own driver writes them. A power cut cannot be
made to happen here, so the order of the real calls is watched instead: each fsync of a file
before the rename that gives it its name."""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bundler import fsutil
from bundler.errors import IntegrityError
from bundler.pipeline.setup import create_site
from bundler.signing import generate_key, public_pem
from bundler.site.create import SiteSpec
from bundler.site.registry_storage import PlantedLink, RegistryStorage


@pytest.fixture
def storage(tmp_path: Path) -> RegistryStorage:
    trust = tmp_path / "release.pub"
    trust.write_bytes(public_pem(generate_key().public_key()))
    site = create_site(SiteSpec(tmp_path / "site", [trust], 1, None, name="store-1", http_listen="127.0.0.1:1",
                                registry_listen="127.0.0.1:2"), as_root=True)
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

    def noted_replace(source: str | os.PathLike[str], target: str | os.PathLike[str], *,
                      src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        where = os.readlink(f"/proc/self/fd/{src_dir_fd}") if src_dir_fd is not None else ""
        calls.append(("replace", os.path.join(where, os.fspath(source))))
        replace(source, target, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    monkeypatch.setattr(os, "fsync", noted_fsync)
    monkeypatch.setattr(os, "replace", noted_replace)
    return calls


def test_a_blob_and_its_link_are_synced_before_they_are_named(storage: RegistryStorage,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(3 << 20)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    calls = watch_syncs(monkeypatch)
    storage.write(digest, len(data), [data[:1 << 20], data[1 << 20:]])
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
    storage.write(digest, len(data), [data])
    storage.link("store/app", digest)
    assert storage.has(digest, len(data)) and storage.linked("store/app", digest, len(data))
    os.truncate(storage.data(digest), 4096)
    assert storage.has(digest)  # there, by name
    assert not storage.has(digest, len(data)) and not storage.linked("store/app", digest, len(data))
    storage.write(digest, len(data), [data])  # written again, whole
    assert storage.data(digest).read_bytes() == data


@pytest.fixture(params=["one thread", "write-behind"])
def copy(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways a blob is copied: by the taker's thread, and (from PIPELINE_FROM bytes, made small
    here) by a writer thread of its own."""
    if request.param == "write-behind":
        monkeypatch.setattr(fsutil, "PIPELINE_FROM", 1 << 20)
    return str(request.param)


def test_a_large_blob_goes_to_the_disk_while_it_is_copied(storage: RegistryStorage, copy: str,
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
    storage.write(digest, len(data), [data[i:i + (1 << 20)] for i in range(0, len(data), 1 << 20)])
    assert handed == [(i * fsutil.WRITEBACK_STEP, fsutil.WRITEBACK_STEP) for i in range(3)]
    assert storage.data(digest).read_bytes() == data


def test_a_blob_whose_bytes_fail_their_check_midway_leaves_nothing(storage: RegistryStorage, copy: str) -> None:
    """The reader raises (the bytes are not the digest's) after a few MiB: that error, and no data
    file, no partial file; the writer thread does not outlive the copy."""
    data = os.urandom(8 << 20)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"

    def chunks() -> Iterator[bytes]:
        yield from (data[i:i + (1 << 20)] for i in range(0, 4 << 20, 1 << 20))
        raise IntegrityError("blob does not match its digest")

    with pytest.raises(IntegrityError, match="does not match"):
        storage.write(digest, len(data), chunks())
    assert not storage.has(digest)
    assert storage.partials() == {}
    assert not [t for t in threading.enumerate() if t.name == "write-behind"]


def test_a_full_disk_stops_the_copy_with_its_error(small_disk: Path, copy: str) -> None:
    """Writing 16 MiB to a 4 MiB disk: ENOSPC, raised at once in the copying thread (not a hang
    with the reader waiting on a writer that died), after fewer chunks than the whole."""
    taken = 0

    def chunks() -> Iterator[bytes]:
        nonlocal taken
        for _ in range(16):
            taken += 1
            yield os.urandom(1 << 20)

    with open(small_disk / "blob", "wb") as out, pytest.raises(OSError) as raised:
        fsutil.write_synced(out, chunks(), 16 << 20)
    assert raised.value.errno == errno.ENOSPC
    assert taken < 16 if copy == "one thread" else taken <= 4 + 1 + fsutil.PIPELINE_DEPTH + 1


@pytest.mark.parametrize("planted", ["blobs/sha256", "repositories/store"])
def test_a_link_planted_in_the_storage_is_refused_and_nothing_is_written_outside(
        storage: RegistryStorage, tmp_path: Path, planted: str) -> None:
    """The import runs as root: a link in the storage to a directory outside the site would make it
    write there. It is a refusal naming the link; the directory outside stays empty."""
    outside = tmp_path / "outside"
    outside.mkdir()
    data = os.urandom(4096)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    link = storage.root / planted / (digest[7:9] if planted.startswith("blobs") else "app")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)
    with pytest.raises(PlantedLink) as refused:
        if planted.startswith("blobs"):
            storage.write(digest, len(data), [data])
        else:
            storage.link("store/app", digest)
    assert f"{link};" in refused.value.message
    assert list(outside.rglob("*")) == []
    assert not list(storage.incoming.glob("*.partial"))


def test_an_incoming_directory_planted_as_a_link_is_refused_and_what_it_points_at_stays(
        storage: RegistryStorage, tmp_path: Path) -> None:
    """The first write removes a killed import's partial files: never through a link to elsewhere."""
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "keep.partial").write_bytes(b"not the site's")
    storage.incoming.parent.mkdir(parents=True, exist_ok=True)
    storage.incoming.symlink_to(outside)
    data = os.urandom(4096)
    with pytest.raises(PlantedLink) as refused:
        storage.write(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), [data])
    assert f"{storage.incoming};" in refused.value.message
    assert [p.name for p in outside.iterdir()] == ["keep.partial"]
