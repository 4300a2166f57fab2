"""Regenerate the attack bundles under tests/assets/attacks (committed; run only to change them).

    python -m tests.assets.make_attacks

Every file is a small bundle reproducing one attack (or one precondition: `good-2.0.0`), signed
with the test-only keys under tests/assets/keys. tests/attack_cases.py says what each must fail with.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bundler import signing
from bundler.bundle import layout
from bundler.bundle.manifest import BundleManifest, signatures_json
from bundler.keyfiles import load_signing_key
from bundler.pipeline.build import BundleInfo, Contents, write_bundle
from devtools.images import layer, memory_image

HERE = Path(__file__).parent
KEYS = HERE / "keys"
OUT = HERE / "attacks"


def key(name: str) -> signing.ec.EllipticCurvePrivateKey:
    return load_signing_key(KEYS / f"{name}.key")


def image(repo: str, text: str) -> Contents:
    return memory_image(f"example.test/attack/{repo}:1", layer({"etc/release": (text.encode() * 64, 0o644)}))


def bundle(path: Path, version: str, signers: list[str], repo: str = "v3", text: str = "three",
           expires: dt.timedelta | None = None) -> Path:
    write_bundle(BundleInfo("attack", version, "sha256:" + "0" * 64, expires), image(repo, text), path, jobs=1,
                 keys=[key(name) for name in signers])
    return path


def rewrite(path: Path, change: Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]) -> None:
    """Read every member, let `change` edit the list, write the tar again (test tooling, not bundler)."""
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]  # type: ignore[union-attr]
    change(members)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)


def replace(name: str, transform: Callable[[bytes], bytes]) -> Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        for i, (info, data) in enumerate(members):
            if info.name == name:
                members[i] = (info, transform(data))
    return change


def largest_blob(path: Path) -> str:
    with tarfile.open(path) as tar:
        return max((m for m in tar.getmembers() if m.name.startswith(layout.OCI_BLOBS)), key=lambda m: m.size).name


def special(info: tarfile.TarInfo) -> Callable[[list[tuple[tarfile.TarInfo, bytes]]], None]:
    def change(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        members.insert(len(members) - 1, (info, b"evil" if info.isreg() else b""))
    return change


def consistent(manifest: bytes) -> bytes:
    """bundle.json with its content_digest recomputed, as a forger would: only the signature tells."""
    doc = json.loads(manifest)
    doc.pop("content_digest", None)
    doc["content_digest"] = BundleManifest.from_bytes(json.dumps(doc).encode()).content_digest
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def resigned(path: Path, change: Callable[[dict[str, Any]], object],
             raw: Callable[[bytes], bytes] = lambda b: b) -> None:
    """bundle.json edited by `change` and signed again by `release`: a bundle whose signature is
    valid, so only the parser stands between its content and the site (a leaked key, a buggy
    build)."""
    def edit(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        for i, (info, data) in enumerate(members):
            if info.name == layout.MANIFEST:
                doc = json.loads(data)
                change(doc)
                manifest = raw(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
                members[i] = (info, manifest)
        for i, (info, _) in enumerate(members):
            if info.name == layout.SIGNATURES:
                members[i] = (info, signatures_json([signing.sign(key("release"), manifest)]))
    rewrite(path, edit)


def deep(levels: int) -> bytes:
    """JSON nested `levels` deep (json.dumps cannot write it: it recurses too)."""
    return b"[" * levels + b"]" * levels


def pax_header_claiming(size: int) -> bytes:
    """A PAX extended header block whose size field says `size` bytes follow (none do)."""
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, size
    return info.tobuf(tarfile.USTAR_FORMAT)


def forged_manifests() -> None:
    """Validly signed bundles whose bundle.json has a wrong shape or a name that would become a path."""
    blob = "sha256:" + "1" * 64
    cases: dict[str, Callable[[dict[str, Any]], object]] = {
        "name-traversal-image": lambda d: d["images"][0].update(ref="example.test/../x:1"),
        "name-traversal-chart": lambda d: d.update(charts=[{"name": "../x", "version": "1.0.0", "digest": blob}]),
        "name-traversal-repo": lambda d: d.update(repos=[{"name": "../x", "refs": {"refs/heads/main": "a" * 40},
                                                          "bundle": "git/../x.bundle"}]),
        "name-traversal-artifact": lambda d: d.update(artifacts=[{
            "ref": "example.test/models/m:1", "digest": blob,
            "media_type": "application/vnd.oci.image.manifest.v1+json",
            "source": "path", "files": [{"title": "../../etc/cron.d/evil", "digest": blob, "size": 1,
                                         "media_type": "application/vnd.oci.image.layer.v1.tar"}]}]),
        "name-traversal-update": lambda d: d.update(updates=[{"name": "x", "kind": "file", "file": "../x",
                                                              "sha256": "1" * 64, "size": 1}]),
        "type-confused-expires": lambda d: d.update(expires=5),
        "type-confused-images": lambda d: d.update(images=5),
        "type-confused-platforms": lambda d: d["images"][0].update(platforms=5),
        "type-confused-files": lambda d: d.update(files=[]),
        "injected-control-stanza": lambda d: d.update(updates=[{
            "name": "evil", "kind": "deb", "file": "evil_1.0_all.deb", "sha256": "1" * 64, "size": 1,
            "metadata": {"package": "evil", "version": "1.0", "arch": "all", "control":
                         "Package: evil\nVersion: 1.0\nArchitecture: all\n\nPackage: libc6\nVersion: 99\n"
                         "Architecture: all\nFilename: pool/elsewhere/libc6.deb"}}]),
    }
    for name, change in cases.items():
        resigned(bundle(OUT / f"{name}.bundle.tar", "3.0.0", ["release"]), change)

    resigned(bundle(OUT / "deep-manifest.bundle.tar", "3.0.0", ["release"]), lambda d: d.update(future="DEEP"),
             lambda b: b.replace(b'"DEEP"', deep(100_000)))
    path = bundle(OUT / "deep-signatures.bundle.tar", "3.0.0", ["release"])
    rewrite(path, replace(layout.SIGNATURES, lambda _: b'{"signatures":' + deep(100_000) + b"}"))

    path = bundle(OUT / "directory-member.bundle.tar", "3.0.0", ["release"])
    blob_name = largest_blob(path)

    def directory_after_blob(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        info = tarfile.TarInfo(blob_name)
        info.type = tarfile.DIRTYPE
        members.insert(len(members) - 1, (info, b""))
    rewrite(path, directory_after_blob)

    path = bundle(OUT / "huge-pax-header.bundle.tar", "3.0.0", ["release"])
    data = path.read_bytes().rstrip(b"\0")
    data += b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    path.write_bytes(data + pax_header_claiming(3_000_000_000) + b"\0" * tarfile.BLOCKSIZE * 8)


def artifact_title_climbs_out() -> None:
    """A validly signed bundle whose artifact manifest titles its layer `../../etc/cron.d/evil`
    (`oras pull` would write there), while bundle.json lists a harmless title."""
    from bundler.kinds.artifacts.entry import ArtifactEntry, ArtifactFile
    from bundler.kinds.base import Part
    from bundler.oci.content import OciContent

    layer_type, data, empty = "application/vnd.oci.image.layer.v1.tar", b"* * * * * root sh\n", b"{}"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "artifactType": "application/vnd.acme.model.v1",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                                      "digest": "sha256:" + hashlib.sha256(empty).hexdigest(), "size": 2},
                           "layers": [{"mediaType": layer_type, "digest": digest, "size": len(data),
                                       "annotations": {"org.opencontainers.image.title": "../../etc/cron.d/evil"}}]
                           }).encode()
    oci = OciContent()
    for blob in (manifest, data, empty):
        oci.add_small_blob("sha256:" + hashlib.sha256(blob).hexdigest(), blob)
    entry = ArtifactEntry("example.test/models/m:1", "sha256:" + hashlib.sha256(manifest).hexdigest(),
                          "application/vnd.oci.image.manifest.v1+json", "application/vnd.acme.model.v1", "path",
                          (ArtifactFile("model.onnx", digest, len(data), layer_type),))
    contents = Contents(oci, {"artifacts": Part((entry,))})
    write_bundle(BundleInfo("attack", "3.0.0", "sha256:" + "0" * 64, None), contents,
                 OUT / "artifact-title-climbs-out.bundle.tar", jobs=1, keys=[key("release")])


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.bundle.tar"):
        old.unlink()
    bundle(OUT / "good-2.0.0.bundle.tar", "2.0.0", ["release", "security"], repo="v2", text="two")
    bundle(OUT / "unsigned.bundle.tar", "3.0.0", [])
    bundle(OUT / "untrusted-signer.bundle.tar", "3.0.0", ["stranger"])
    bundle(OUT / "below-threshold.bundle.tar", "3.0.0", ["release"])

    other = bundle(OUT / "tmp-other.bundle.tar", "3.0.0", ["release"], text="another")
    with tarfile.open(other) as tar:
        stolen = tar.extractfile(layout.SIGNATURES).read()  # type: ignore[union-attr]
    other.unlink()
    path = bundle(OUT / "signature-over-other-manifest.bundle.tar", "3.0.0", [])
    rewrite(path, replace(layout.SIGNATURES, lambda _: stolen))

    path = bundle(OUT / "manifest-changed-after-signing.bundle.tar", "3.0.0", ["release"])
    rewrite(path, replace(layout.MANIFEST, lambda d: consistent(d.replace(b'"version":"3.0.0"', b'"version":"3.0.1"'))))

    path = bundle(OUT / "payload-byte-flipped.bundle.tar", "3.0.0", ["release"])
    rewrite(path, replace(largest_blob(path), lambda d: d[:10] + bytes([d[10] ^ 1]) + d[11:]))

    path = bundle(OUT / "payload-truncated.bundle.tar", "3.0.0", ["release"])
    rewrite(path, replace(largest_blob(path), lambda d: d[: len(d) // 2]))

    path = bundle(OUT / "extra-member.bundle.tar", "3.0.0", ["release"])
    rewrite(path, special(tarfile.TarInfo(layout.OCI_BLOBS + "e" * 64)))

    path = bundle(OUT / "path-traversal.bundle.tar", "3.0.0", ["release"])
    rewrite(path, special(tarfile.TarInfo("../../etc/cron.d/evil")))

    path = bundle(OUT / "absolute-path.bundle.tar", "3.0.0", ["release"])
    rewrite(path, special(tarfile.TarInfo("/etc/cron.d/evil")))

    for kind, name, linkname in (("symlink", tarfile.SYMTYPE, "/etc/shadow"), ("hardlink", tarfile.LNKTYPE,
                                                                                layout.MANIFEST)):
        info = tarfile.TarInfo(f"oci/{kind}")
        info.type, info.linkname = name, linkname
        rewrite(bundle(OUT / f"{kind}.bundle.tar", "3.0.0", ["release"]), special(info))

    info = tarfile.TarInfo("oci/device")
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    rewrite(bundle(OUT / "device-node.bundle.tar", "3.0.0", ["release"]), special(info))

    path = bundle(OUT / "duplicate-member.bundle.tar", "3.0.0", ["release"])
    blob = largest_blob(path)

    def duplicate(members: list[tuple[tarfile.TarInfo, bytes]]) -> None:
        original = next(m for m in members if m[0].name == blob)
        evil = tarfile.TarInfo(blob)
        members.insert(len(members) - 1, (evil, original[1][::-1]))

    rewrite(path, duplicate)

    bundle(OUT / "expired.bundle.tar", "3.0.0", ["release"], expires=dt.timedelta(days=-1))
    bundle(OUT / "rollback-older-version.bundle.tar", "1.0.0", ["release"], repo="v1", text="one")
    bundle(OUT / "same-version-different-content.bundle.tar", "2.0.0", ["release"], repo="v2", text="two, again")
    # another bundle name, an older release, the same image tag as good-2.0.0 but other content
    write_bundle(BundleInfo("other", "1.0.0", "sha256:" + "0" * 64, None), image("v2", "another two"),
                 OUT / "other-name-same-tag.bundle.tar", jobs=1, keys=[key("release")])
    forged_manifests()
    artifact_title_climbs_out()
    print("\n".join(sorted(p.name for p in OUT.glob("*.bundle.tar"))))


if __name__ == "__main__":
    main()
