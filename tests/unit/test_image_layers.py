"""The tar layers of a model packed `as: image`: what Python's tarfile (an independent reader) finds
in them, a file past ustar's 8 GiB size field, the split into layers, a file changed during a build."""

from __future__ import annotations

import hashlib
import io
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
    assert layer.digests() == ("sha256:" + hashlib.sha256(data).hexdigest(), digests)


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


def test_a_file_that_changes_between_the_two_passes_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"a" * 4096)
    [layer] = plan_layers("models", [("model.bin", model)], "model")
    digest = "sha256:" + hashlib.sha256(layer_bytes(layer)).hexdigest()
    model.write_bytes(b"b" * 4096)  # the same size, other bytes
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        layer.write(digest, lambda offset, data: None, lambda n: None)
    model.write_bytes(b"a" * 5000)  # another size
    with pytest.raises(IntegrityError, match="changed while the bundle was built"):
        layer.write(digest, lambda offset, data: None, lambda n: None)
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
