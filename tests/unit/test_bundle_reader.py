"""The bundle format, offline: what the writer lays out reads back exactly; every known attack on
the tar (each builder is named after the attack it reproduces) is reported, naming the member."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bundler import signing
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parts import Split
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import verify_bundle
from bundler.errors import IntegrityError, UsageError
from bundler.pipeline.build import BundleInfo, write_bundle
from devtools.images import layer, memory_image

KEY = signing.generate_key()
POLICY = signing.TrustPolicy((signing.TrustedKey("release", KEY.public_key()),))


def small_bundle(path: Path, leave_out_layer: bool = False, expires: dt.timedelta | None = None) -> Path:
    """A real one-image bundle written by the real writer, from memory (no registry needed)."""
    lay = layer({"hello.txt": (b"hello\n", 0o644)})
    collection = memory_image("example.com/hello:1", lay)
    if leave_out_layer:
        del collection.oci.small_blobs[lay.digest]
    write_bundle(BundleInfo("unit", "1.0.0", "sha256:" + "0" * 64, expires), collection, path, jobs=2, keys=[KEY])
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return small_bundle(tmp_path / "unit.bundle.tar")


def test_written_bundle_reads_back_and_verifies(bundle: Path) -> None:
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == layout.MANIFEST and names[-1] == layout.SIGNATURES
    with BundleReader(bundle) as reader:
        report = verify_bundle(reader, POLICY)
        manifest, data, _ = reader.manifest()
    assert report.verified, report.problems
    assert BundleManifest.from_bytes(data).to_bytes() == data  # canonical, round trip loses nothing
    assert set(manifest.files) == set(names) - {layout.MANIFEST, layout.SIGNATURES}


def test_unknown_manifest_fields_survive_a_round_trip(bundle: Path) -> None:
    with BundleReader(bundle) as reader:
        doc = json.loads(reader.manifest_bytes())
    doc["future_field"] = {"x": 1}
    data = json.dumps(doc).encode()
    assert json.loads(BundleManifest.from_bytes(data).to_bytes())["future_field"] == {"x": 1}


def _append(bundle: Path, info: tarfile.TarInfo, data: bytes = b"") -> None:
    with tarfile.open(bundle, "a") as tar:
        info.size = len(data) if info.isreg() else 0
        tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


def path_traversal(bundle: Path) -> str:
    _append(bundle, tarfile.TarInfo("../../etc/cron.d/evil"), b"* * * * * root sh")
    return "../../etc/cron.d/evil"


def absolute_path(bundle: Path) -> str:
    _append(bundle, tarfile.TarInfo("/etc/evil"), b"x")
    return "/etc/evil"


def symlink_member(bundle: Path) -> str:
    info = tarfile.TarInfo("oci/blobs/link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/shadow"
    _append(bundle, info)
    return "oci/blobs/link"


def hardlink_member(bundle: Path) -> str:
    info = tarfile.TarInfo("oci/hard")
    info.type, info.linkname = tarfile.LNKTYPE, layout.MANIFEST
    _append(bundle, info)
    return "oci/hard"


def device_member(bundle: Path) -> str:
    info = tarfile.TarInfo("oci/dev")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    _append(bundle, info)
    return "oci/dev"


def fifo_member(bundle: Path) -> str:
    info = tarfile.TarInfo("oci/fifo")
    info.type = tarfile.FIFOTYPE
    _append(bundle, info)
    return "oci/fifo"


def duplicate_manifest(bundle: Path) -> str:
    with BundleReader(bundle) as reader:
        data = reader.manifest_bytes()
    _append(bundle, tarfile.TarInfo(layout.MANIFEST), data)
    return layout.MANIFEST


def dotted_path(bundle: Path) -> str:
    _append(bundle, tarfile.TarInfo("oci/./blobs/x"), b"x")
    return "oci/./blobs/x"


ATTACKS: list[Callable[[Path], str]] = [path_traversal, absolute_path, symlink_member, hardlink_member,
                                        device_member, fifo_member, duplicate_manifest, dotted_path]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.__name__ for a in ATTACKS])
def test_attacks_on_the_tar_are_reported(attack: Callable[[Path], str], bundle: Path) -> None:
    name = attack(bundle)
    with BundleReader(bundle) as reader:
        report = verify_bundle(reader, POLICY)
    assert not report.verified
    assert any(name in str(problem) for problem in report.problems), report.problems


def test_a_second_signatures_member_is_allowed(bundle: Path) -> None:
    """A countersignature appends signatures.json again; the last one counts."""
    with BundleReader(bundle) as reader:
        signatures = reader.signatures()
    appended = json.dumps({"signatures": [*signatures, {"keyid": "k"}]}).encode()
    _append(bundle, tarfile.TarInfo(layout.SIGNATURES), appended)
    with BundleReader(bundle) as reader:
        assert verify_bundle(reader, POLICY).verified
        assert reader.signatures() == [*signatures, {"keyid": "k"}]


def test_a_file_that_is_no_bundle_at_all_is_a_usage_error_saying_what_it_is(tmp_path: Path) -> None:
    """Not a tar: the wrong file was given (exit 2), not a bundle refused by verification (exit 3)."""
    junk = tmp_path / "junk.bundle.tar"
    junk.write_bytes(b"PK\x03\x04 this is a zip file" * 100)
    with pytest.raises(UsageError, match=r"junk\.bundle\.tar is not a bundle: it is a zip archive"):
        BundleReader(junk).manifest()


def test_manifest_that_is_not_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.bundle.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(layout.MANIFEST)
        info.size = 5
        tar.addfile(info, io.BytesIO(b"{nope"))
    with BundleReader(path) as reader, pytest.raises(IntegrityError, match=r"bundle\.json is not a valid"):
        reader.manifest()


def test_an_image_whose_layer_is_not_in_the_bundle_is_refused(tmp_path: Path) -> None:
    bundle = small_bundle(tmp_path / "incomplete.bundle.tar", leave_out_layer=True)
    with BundleReader(bundle) as reader:
        report = verify_bundle(reader, POLICY)
    assert not report.verified
    assert any(p.code == "graph-incomplete" and "example.com/hello:1: blob sha256:" in p.message
               and "is not in the bundle" in p.message for p in report.problems)


def test_expiry_becomes_an_absolute_time_and_is_enforced(tmp_path: Path) -> None:
    from bundler.bundle.verify import check_policy, parse_time

    path = tmp_path / "expiring.bundle.tar"
    small_bundle(path, expires=dt.timedelta(days=90))
    with BundleReader(path) as reader:
        manifest, _, _ = reader.manifest()
        assert manifest.expires is not None
        assert parse_time(manifest.expires) - parse_time(manifest.created) == dt.timedelta(days=90)
        assert check_policy(reader, POLICY).problems == []
        later = parse_time(manifest.expires) + dt.timedelta(seconds=1)
        assert [p.code for p in check_policy(reader, POLICY, now=later).problems] == ["expired"]


@pytest.mark.parametrize("split_size", [4096, 5120, 6000])
def test_rewriting_the_tail_of_a_split_bundle_keeps_parts_within_the_split_size(tmp_path: Path,
                                                                               split_size: int) -> None:
    """A countersignature rewrites the end of the last part; a full part gets the tail as a new part."""
    import hashlib
    import json

    from bundler.bundle.parts import PartSet, rewrite_tail
    from tests.helpers import split_bundle

    data = bytes(range(256)) * 40  # 10240 bytes
    whole = tmp_path / "b.bundle.tar"
    whole.write_bytes(data)
    index = split_bundle(whole, split_size, "sha256:" + "0" * 64)
    tail = b"T" * 1500
    rewrite_tail(index, 9216, tail)
    parts = PartSet(index)
    try:
        assert parts.pread(parts.size, 0) == data[:9216] + tail
        assert all(p.size <= split_size for p in parts.parts)
        doc = json.loads(index.read_text())
        assert all(p["sha256"] == hashlib.sha256((tmp_path / p["file"]).read_bytes()).hexdigest() for p in doc["parts"])
        assert doc["size"] == 9216 + len(tail)
    finally:
        parts.close()


@pytest.mark.parametrize("split_size", [700, 1024, 1536])
def test_a_bundle_written_as_parts_holds_the_bytes_of_the_whole(tmp_path: Path, split_size: int) -> None:
    """Members that straddle part boundaries, by positional writes and by copy_file_range: the parts
    read in order are the file a single write makes; the index gives each part's size and sha256."""
    import hashlib

    from bundler.bundle.parts import PartSet
    from bundler.bundle.writer import BundleFile, TarLayout

    staged = tmp_path / "staged.bin"
    staged.write_bytes(bytes(range(256)) * 9)  # 2304 bytes, copied in the kernel
    outputs = []
    for name, size in (("whole.tar", None), ("split.tar", split_size)):
        tar = TarLayout(mtime=0)
        tar.add("a", 1000)
        tar.add("b", staged.stat().st_size)
        tar.add("c", 3)
        out = BundleFile(tmp_path / name, tar, Split(size) if size else None)
        out.write_at("a", 0, b"x" * 600)
        out.write_at("a", 600, b"y" * 400)
        out.copy_file("b", staged)
        out.write_member("c", b"end")
        outputs.append(out.commit("sha256:" + "0" * 64))
    whole, index = outputs
    assert index.name == "split.tar.parts.json" and not (tmp_path / "split.tar").exists()
    doc = json.loads(index.read_text())
    assert all(p["size"] <= split_size for p in doc["parts"]) and len(doc["parts"]) > 1
    assert all(p["sha256"] == hashlib.sha256((tmp_path / p["file"]).read_bytes()).hexdigest() for p in doc["parts"])
    parts = PartSet(index)
    try:
        assert parts.pread(parts.size, 0) == whole.read_bytes()
    finally:
        parts.close()
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize("codec", ["isa-l", "zfec"])
@pytest.mark.parametrize("split_size", [700, 1536, (1 << 20) + 3000])  # the last: stripes of a part and a bit
def test_any_two_lost_or_damaged_parts_of_a_set_with_two_parity_parts_read_as_the_whole(
        tmp_path: Path, split_size: int, codec: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pair of the set's files (data and parity parts) deleted, cut short or named damaged:
    the set reads as the whole file, the lost data parts named; three are refused, all named. With
    ISA-L, and with zfec alone (a system without libisal2)."""
    import itertools
    import random

    from bundler.bundle import parity

    if codec == "zfec":
        monkeypatch.setattr(parity, "_isal", lambda: None)
    else:
        assert parity._isal() is not None, "libisal2 is one of the packages devtools/deps.sh installs"

    from bundler.bundle.parts import PartSet
    from bundler.bundle.writer import BundleFile, TarLayout

    payload = random.Random(split_size).randbytes(3 * split_size + 777)
    outputs = []
    for name, split in (("whole.tar", None), ("set.tar", Split(split_size, 2))):
        tar = TarLayout(mtime=0)
        tar.add("a", len(payload))
        out = BundleFile(tmp_path / name, tar, split)
        out.write_member("a", payload)
        outputs.append(out.commit("sha256:" + "0" * 64))
    whole, index = outputs[0].read_bytes(), outputs[1]
    doc = json.loads(index.read_text())
    files = [p["file"] for p in doc["parts"]] + [p["file"] for p in doc["parity"]["parts"]]
    assert files[-2:] == ["set.tar.parity-000", "set.tar.parity-001"] and len(files) >= 6
    kept = {f: (tmp_path / f).read_bytes() for f in files}
    for pair in itertools.combinations(files, 2):
        for how, f in zip(("deleted", "short"), pair, strict=True):
            if how == "deleted":
                (tmp_path / f).unlink()
            else:
                (tmp_path / f).write_bytes(kept[f][:-1])
        parts = PartSet(index)
        try:
            assert parts.pread(parts.size, 0) == whole, pair
            assert parts.rebuilt == sorted(f for f in pair if ".part-" in f)
        finally:
            parts.close()
        for f in pair:
            (tmp_path / f).write_bytes(kept[f])
        parts = PartSet(index, pair)  # found damaged by their sha256: read from parity all the same
        try:
            assert parts.pread(parts.size, 0) == whole, pair
        finally:
            parts.close()
    (tmp_path / files[0]).unlink()
    with pytest.raises(IntegrityError) as refused:
        PartSet(index, files[1:3])
    assert "3 parts of this split bundle are bad" in refused.value.message and all(
        f in refused.value.message for f in files[:3])


@pytest.mark.parametrize(("k", "m"), [(1, 1), (3, 2), (10, 2), (15, 4)])
def test_isa_l_computes_zfecs_code_byte_for_byte(k: int, m: int) -> None:
    """Where the system has ISA-L, parity parts are computed by it: the same bytes zfec makes, and
    either rebuilds from the other's parity (odd and tiny block lengths too)."""
    import itertools
    import random

    from bundler.bundle import parity

    lib = parity._isal()
    assert lib is not None, "libisal2 is one of the packages devtools/deps.sh installs"
    isal, zfec = parity.Isal(k, m, lib), parity.Zfec(k, m)
    rng = random.Random(k * 100 + m)

    def encode(codec: parity.Codec, blocks: list[bytes]) -> list[bytes]:
        outputs = [bytearray(len(blocks[0])) for _ in range(m)]
        codec.encode_into(blocks, [memoryview(o) for o in outputs])
        return [bytes(o) for o in outputs]

    for length in (1, 7, 31, 4096, 65537):
        blocks = [rng.randbytes(length) for _ in range(k)]
        encoded = encode(zfec, blocks)
        assert encode(isal, blocks) == encoded
        assert encode(isal, [memoryview(bytearray(b)) for b in blocks]) == encoded  # the build's reused buffers
        shares = blocks + encoded
        for lost in itertools.islice(itertools.combinations(range(k), min(m, k)), 12):
            sources = [i for i in range(k + m) if i not in lost][:k]
            given = [shares[i] for i in sources]
            expected = [blocks[i] for i in lost]
            assert isal.rebuild(given, sources, list(lost)) == expected == zfec.rebuild(given, sources, list(lost))


def test_a_set_of_many_parts_uses_smaller_stripes_and_an_index_may_not_ask_for_more(tmp_path: Path) -> None:
    """Past 32 parts the stripe shrinks (a stripe of every part stays within 32 MiB: what the build
    holds twice and a rebuild once); an index naming a larger stripe is not a valid index."""
    import random

    from bundler.bundle import parity
    from bundler.bundle.parts import PartSet
    from bundler.bundle.writer import BundleFile, TarLayout

    assert [parity.stripe_for(k) for k in (1, 10, 32, 33, 40, 254)] == [
        1 << 20, 1 << 20, 1 << 20, 960 << 10, 768 << 10, 128 << 10]
    assert all(k * parity.stripe_for(k) <= 32 << 20 for k in range(1, 255))
    payload = random.Random(40).randbytes(39_500)
    tar = TarLayout(mtime=0)
    tar.add("a", len(payload))
    out = BundleFile(tmp_path / "set.tar", tar, Split(1000, 2))
    out.write_member("a", payload)
    index = out.commit("sha256:" + "0" * 64)
    doc = json.loads(index.read_text())
    assert len(doc["parts"]) == 42 and doc["parity"]["stripe"] == parity.stripe_for(42)
    whole = b"".join((tmp_path / p["file"]).read_bytes() for p in doc["parts"])
    (tmp_path / doc["parts"][7]["file"]).unlink()
    (tmp_path / doc["parts"][33]["file"]).unlink()
    parts = PartSet(index)
    try:
        assert parts.pread(parts.size, 0) == whole and parts.rebuilt == ["set.tar.part-007", "set.tar.part-033"]
    finally:
        parts.close()
    doc["parity"]["stripe"] = 1 << 20
    index.write_text(json.dumps(doc))
    with pytest.raises(IntegrityError, match=r"not a valid parts index: .*a stripe of 1048576 bytes for 42 parts"):
        PartSet(index)
