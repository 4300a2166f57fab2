"""What the format reads of artifacts: ref and digest are the release; each manifest is an OCI top;
the titles bundle.json lists are the artifact's own and stay inside the directory a client pulls into."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, cast

from bundler import problems
from bundler.bundle import layout
from bundler.errors import BundlerError
from bundler.jsontypes import Out
from bundler.kinds.artifacts.entry import LAYER_TYPE, TITLE_ANNOTATION, ArtifactEntry, ArtifactFile, file_title
from bundler.kinds.artifacts.entry import media_type as layer_media_type
from bundler.kinds.base import Format
from bundler.oci import media
from bundler.oci.layout import OciTop
from bundler.problems import Problem

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader


class ArtifactFormat(Format[ArtifactEntry]):
    def content(self, entries: Sequence[ArtifactEntry]) -> Sequence[Out]:
        return sorted([a.ref, a.digest] for a in entries)

    def oci_tops(self, entries: Sequence[ArtifactEntry]) -> list[OciTop]:
        return [OciTop(f"artifact {a.ref}", a.digest, a.media_type, a.ref) for a in entries]

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        """The titles bundle.json lists are the artifact's own, and each stays inside the directory a
        client pulls into (`oras pull` writes each layer to its title); an image-packed one is an image
        of tar layers."""
        found = []
        for entry in cast("tuple[ArtifactEntry, ...]", manifest.entries(self.kind.key)):
            label = f"artifact {entry.ref}"
            read = partial(_read_manifest, reader)
            try:
                if entry.form == "image":
                    check_image(read, entry.digest, entry.media_type, sum(f.size for f in entry.files), label)
                    continue
                files = titled_files(read, entry.digest, entry.media_type, label)
            except (ValueError, BundlerError) as exc:  # ManifestError is a ValueError
                found.append(Problem(problems.GRAPH_INVALID, label, str(exc)))
                continue
            if files != entry.files:
                found.append(Problem(problems.GRAPH_INVALID, label,
                                     f"{label}: its files differ from what {layout.MANIFEST} lists"))
        return found


def _read_manifest(reader: BundleReader, digest: str) -> bytes:
    return reader.read_small(layout.blob_path(digest), media.MAX_MANIFEST_BYTES)


def titled_files(read: Callable[[str], bytes], digest: str, media_type: str, origin: str) -> tuple[ArtifactFile, ...]:
    """Every layer with a title, in every manifest of the artifact; ValueError for an unsafe title
    (one that would leave the directory a client pulls into) or one given twice."""
    files: dict[str, ArtifactFile] = {}
    for _, kind, data in media.walk_image(read, digest, media_type).manifests:
        if kind in media.INDEX_TYPES:
            continue
        for layer in media.image_blobs(data)[1:]:
            annotations = (layer.raw or {}).get("annotations")
            title = annotations.get(TITLE_ANNOTATION) if isinstance(annotations, dict) else None
            if title is None:
                continue
            if not isinstance(title, str):
                raise ValueError(f"{origin}: layer {layer.digest} has a title that is not a string")
            try:
                file_title(title)
                layer_media_type(layer.media_type)
            except ValueError as exc:
                raise ValueError(f"{origin}: layer {layer.digest}: {exc}") from None
            known = files.setdefault(title, ArtifactFile(title, layer.digest, layer.size, layer.media_type))
            if known.digest != layer.digest:
                raise ValueError(f"{origin}: two layers are titled {title!r}")
    return tuple(sorted(files.values(), key=lambda f: f.title))


def check_image(read: Callable[[str], bytes], digest: str, media_type: str, file_bytes: int, origin: str) -> None:
    """What an image-packed entry in bundle.json says holds for its manifest: an image manifest (or
    an index of them), an OCI image config, layers of uncompressed tar, room in them for the files it
    lists; ValueError."""
    if media_type == media.OCI_INDEX:
        children = media.index_children(read(digest))  # ManifestError (a ValueError) when it lists none
        if not children:
            raise ValueError(f"{origin}: its index lists no manifest")
        for found in children:
            if found.media_type != media.OCI_MANIFEST:  # one level: an index of images, nothing deeper
                raise ValueError(f"{origin}: its index lists a {found.media_type}, not an image manifest")
            check_image(read, found.digest, found.media_type, file_bytes, origin)
        return
    if media_type != media.OCI_MANIFEST:
        raise ValueError(f"{origin}: an image-packed artifact's manifest is {media.OCI_MANIFEST}")
    config, *layers = media.image_blobs(read(digest))
    if config.media_type != media.OCI_CONFIG or not layers or any(layer.media_type != LAYER_TYPE for layer in layers):
        raise ValueError(f"{origin}: not an image of tar layers with an OCI image config")
    if file_bytes > sum(layer.size for layer in layers):
        raise ValueError(f"{origin}: its layers are smaller than the files listed for it")
