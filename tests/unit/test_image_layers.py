"""The tar layers of a model packed `as: image`: what Python's tarfile (an independent reader) finds
in them, a file past ustar's 8 GiB size field, the split into layers, a file changed during a build."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from pathlib import Path

import pytest

from bundler.errors import IntegrityError, UsageError
from bundler.kinds.artifacts import format as artifact_format
from bundler.kinds.artifacts import image
from bundler.kinds.artifacts.image import LAYER_ALONE, MAX_LAYERS, TarLayer, plan_layers


def layer_bytes(layer: TarLayer, digests: dict[str, str] | None = None) -> bytes:
    return b"".join(layer.stream(digests))


def test_a_layer_is_a_tar_any_reader_unpacks_with_the_files_bytes(tmp_path: Path) -> None:
    files = {"a.bin": os.urandom(1000), "sub/dir/b.txt": b"hello\n", "empty": b""}
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    [layer] = plan_layers("models", sorted((n, tmp_path / n) for n in files), "model")
    digests: dict[str, str] = {}
    data = layer_bytes(layer, digests)
    assert len(data) == layer.size  # the size planned before a byte is read is the size streamed
    assert data == layer_bytes(layer)  # deterministic: the same files, the same digest
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
        assert [m.name for m in members if m.isdir()] == ["models", "models/sub", "models/sub/dir"]
        for member in members:
            assert (member.uid, member.gid, member.mtime) == (0, 0, 0)
            assert member.mode == (0o755 if member.isdir() else 0o644)
        for name, content in files.items():
            extracted = tar.extractfile(f"models/{name}")
            assert extracted is not None and extracted.read() == content
    assert digests == {f"models/{n}": "sha256:" + hashlib.sha256(d).hexdigest() for n, d in files.items()}
    # the build's one read: the layer hashed in a second thread, the files here; the same digests
    digest, file_digests, seen = layer.digests()
    assert (digest, file_digests) == ("sha256:" + hashlib.sha256(data).hexdigest(), digests)
    # what the bundle gets: headers made here, the files as spans the kernel copies: the same bytes
    assert pieces_bytes(layer, seen) == data


def pieces_bytes(layer: TarLayer, seen: dict[str, image.Identity]) -> bytes:
    return b"".join(piece if isinstance(piece, bytes) else piece.path.read_bytes()[piece.offset:][:piece.length]
                    for piece in layer.pieces(seen))


def test_a_file_past_8_gib_carries_its_size_in_a_pax_header(tmp_path: Path) -> None:
    big = tmp_path / "weights.bin"
    with open(big, "wb") as f:  # sparse: no 9 GiB written
        f.truncate(9 << 30)
    [layer] = plan_layers("models", [("weights.bin", big)], "model")
    stream = layer.stream()
    headers = next(stream) + next(stream)  # the directory's, then the file's (a pax header and its ustar one)
    assert b"size=9663676416" in headers
    with tarfile.open(fileobj=io.BytesIO(headers + bytes(1024))) as tar:
        member = tar.next()
        assert member is not None and member.name == "models" and member.isdir()
        member = tar.next()
        assert member is not None and member.name == "models/weights.bin" and member.size == 9 << 30
    assert layer.size == len(headers) + (9 << 30) + 1024  # 9 GiB is a multiple of 512: no padding


def test_large_files_have_layers_of_their_own_and_the_small_share_one(tmp_path: Path) -> None:
    names = {"small-1": 10, "small-2": 20, "big-1": LAYER_ALONE, "big-2": LAYER_ALONE + 1}
    for name, size in names.items():
        with open(tmp_path / name, "wb") as f:
            f.truncate(size)
    layers = plan_layers("m", sorted((n, tmp_path / n) for n in names), "model")
    assert [[f.name for f in layer.files] for layer in layers] == [["m/small-1", "m/small-2"], ["m/big-1"], ["m/big-2"]]

    many = [(f"f{i}", tmp_path / "big-1") for i in range(MAX_LAYERS + 1)]
    with pytest.raises(UsageError, match=f"an image mounts at most {MAX_LAYERS}"):
        plan_layers("m", many, "model")


def test_a_file_that_changes_after_it_was_read_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"a" * 4096)
    [layer] = plan_layers("models", [("model.bin", model)], "model")
    _, _, seen = layer.digests()
    model.write_bytes(b"b" * 4096)  # the same size, other bytes (the same modification time, even)
    os.utime(model, ns=(seen["models/model.bin"][3], seen["models/model.bin"][3]))
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        pieces_bytes(layer, seen)
    _, _, seen = layer.digests()
    pieces = layer.pieces(seen)
    next(pieces), next(pieces)  # the directory's header, the file's
    assert isinstance(next(pieces), image.FileSpan)  # the kernel copies it now ...
    model.write_bytes(b"c" * 4096)  # ... while someone writes it
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        next(pieces)  # checked again after its copy
    model.unlink()
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        pieces_bytes(layer, seen)
    model.write_bytes(b"a" * 5000)  # another size
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        layer.digests()  # the first pass too (its hashing thread ends with it)
    assert not [t for t in threading.enumerate() if t.name == "layer-digest"]


def test_the_config_names_the_platform_and_the_layers() -> None:
    config = image.image_config("linux/arm/v7", ["sha256:" + "a" * 64])
    assert b'"architecture": "arm"' in config and b'"variant": "v7"' in config and b'"os": "linux"' in config


def test_an_index_of_images_is_checked_one_level_deep() -> None:
    """bundle.json says an image-packed artifact: its index must list image manifests, not indexes."""
    config = image.image_config("linux/amd64", ["sha256:" + "a" * 64])
    manifest = image.image_manifest(config, [("sha256:" + "a" * 64, 4096)])
    good = image.image_index([("linux/amd64", manifest), ("linux/arm64", manifest)])
    loop = image.image_index([("linux/amd64", manifest)]).replace(b"image.manifest.v1", b"image.index.v1")
    blobs = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in (manifest, good, loop)}
    artifact_format.check_image(blobs.__getitem__, "sha256:" + hashlib.sha256(good).hexdigest(),
                      "application/vnd.oci.image.index.v1+json", 100, "model")
    with pytest.raises(ValueError, match="not an image manifest"):
        artifact_format.check_image(blobs.__getitem__, "sha256:" + hashlib.sha256(loop).hexdigest(),
                          "application/vnd.oci.image.index.v1+json", 100, "model")
    with pytest.raises(ValueError, match="smaller than the files"):
        artifact_format.check_image(blobs.__getitem__, "sha256:" + hashlib.sha256(good).hexdigest(),
                          "application/vnd.oci.image.index.v1+json", 5000, "model")


def test_a_build_that_lets_the_kernel_copy_the_files_writes_the_bundle_the_byte_for_byte_path_wrote(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same profile built at the same second twice: the files copied by the kernel (spans), and
    every byte made in this process as builds made it before (the layer's stream written piece by
    piece): the two bundles, whole and split with parity, are identical byte for byte."""
    import datetime as dt
    import types

    from bundler.bundle.parts import Split
    from bundler.pipeline import build

    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text('{"layers": 2}\n')
    (model / "sub" / "tokens.bin").write_bytes(os.urandom(5000))
    with open(model / "weights.bin", "wb") as f:  # a layer of its own: 64 MiB and 3 bytes, mostly a hole
        f.write(os.urandom(1 << 20))
        f.truncate(LAYER_ALONE + 3)
    profile = tmp_path / "model.yaml"
    profile.write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: model, version: 1.0.0}\nspec:\n"
                       "  artifacts:\n    - path: model\n      repository: registry.example.com/models/m\n"
                       "      tag: \"1.0\"\n      as: image\n")
    frozen = dt.datetime(2026, 12, 5, 8, 0, 0, tzinfo=dt.UTC)

    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> Clock:  # type: ignore[override]
            return frozen  # type: ignore[return-value]

    monkeypatch.setattr(build, "dt", types.SimpleNamespace(datetime=Clock, UTC=dt.UTC, timedelta=dt.timedelta))
    spans: list[int] = []
    kernel = TarLayer.pieces

    def counted(self: TarLayer, seen: dict[str, image.Identity]) -> object:
        for piece in kernel(self, seen):
            spans.append(isinstance(piece, image.FileSpan))
            yield piece

    def byte_for_byte(self: TarLayer, seen: dict[str, image.Identity]) -> object:
        yield from self.stream()

    outputs = {}
    for name, pieces in (("kernel", counted), ("bytes", byte_for_byte)):
        monkeypatch.setattr(TarLayer, "pieces", pieces)
        (tmp_path / name).mkdir()
        whole = build.build_bundle(build.BuildOptions(profile, tmp_path / name / "m.bundle.tar"))
        split = build.build_bundle(build.BuildOptions(profile, tmp_path / name / "s.bundle.tar",
                                                      split=Split(1 << 20, 2)))
        outputs[name] = (whole.path, split.path)
    assert sum(spans) == 6  # three files, two builds: each copied by the kernel
    (kernel_whole, kernel_index), (bytes_whole, bytes_index) = outputs["kernel"], outputs["bytes"]
    assert kernel_whole.read_bytes() == bytes_whole.read_bytes()
    assert kernel_index.read_bytes() == bytes_index.read_bytes()  # every part's and parity part's sha256
    for part in json.loads(kernel_index.read_text())["parts"] + json.loads(kernel_index.read_text())["parity"]["parts"]:
        assert (kernel_index.parent / part["file"]).read_bytes() == (bytes_index.parent / part["file"]).read_bytes()
