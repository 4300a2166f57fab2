"""Property-based: whatever bytes the reader is given (random, or a valid bundle mutated in its
manifest or its tar headers), it fails only with a BundlerError, never verifies what was changed in
bundle.json, and never writes a file."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bundler.bundle import layout
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import verify_bundle
from bundler.errors import BundlerError
from bundler.keyfiles import load_policy
from tests.attack_cases import GOOD, KEYS

POLICY = load_policy([KEYS / "release.pub"], 1)
GOOD_BYTES = GOOD.read_bytes()
with tarfile.open(GOOD) as _tar:
    MEMBERS = [(m, _tar.extractfile(m).read()) for m in _tar.getmembers()]  # type: ignore[union-attr]
MANIFEST = next(data for m, data in MEMBERS if m.name == layout.MANIFEST)
HEADERS = [m.offset for m, _ in MEMBERS]  # where each member's header starts
SETTINGS = settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")), deadline=None)


def judge(data: bytes) -> bool | None:
    """Verified (True/False), or None when the reader refused with a BundlerError; never anything else."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "case.bundle.tar"
        path.write_bytes(data)
        try:
            with BundleReader(path) as reader:
                verified = verify_bundle(reader, POLICY).verified
        except BundlerError:
            verified = None
        assert list(Path(scratch).iterdir()) == [path] and path.read_bytes() == data  # nothing written
    return verified


def with_manifest(data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in MEMBERS:
            content = data if info.name == layout.MANIFEST else content
            info = tarfile.TarInfo(info.name) if info.name == layout.MANIFEST else info
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@SETTINGS
@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    assert judge(data) is not True


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(MANIFEST) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_mutated_manifest_never_verifies(edits: list[tuple[int, int]]) -> None:
    data = bytearray(MANIFEST)
    for position, value in edits:
        data[position] = value
    result = judge(with_manifest(bytes(data)))
    if bytes(data) != MANIFEST:
        assert result is not True  # the signature covers every byte of bundle.json


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 511), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_tar_headers_fail_only_with_bundler_errors(edits: list[tuple[int, int, int]]) -> None:
    data = bytearray(GOOD_BYTES)
    for member, position, value in edits:
        data[HEADERS[member % len(HEADERS)] + position] = value
    judge(bytes(data))
