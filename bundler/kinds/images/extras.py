"""What travels with an image from its source registry: cosign's tag-scheme artifacts
(`sha256-<hex>.sig`, `.att`, `.sbom` in the same repository) and its OCI 1.1 referrers (the
referrers API where the registry offers it, else the fallback tag `sha256-<hex>`), for the image's
manifest and each platform manifest of a kept index. They go into the bundle's OCI layout whole."""

from __future__ import annotations

from bundler.kinds.images.entry import ImageEntry, ImageExtra, extra_tag
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.content import OciContent, walk

TAG_KINDS = ("sig", "att", "sbom")


def subjects(entry: ImageEntry, oci: OciContent) -> list[str]:
    """The image's manifest digests: its top one, and each manifest under a kept index."""
    graph = media.walk_image(oci.small_blobs.__getitem__, entry.digest, entry.media_type)
    return [entry.digest, *(d for d, _, _ in graph.manifests if d != entry.digest)]


def collect_extras(client: RegistryClient, repo: str, entry: ImageEntry, oci: OciContent) -> tuple[ImageExtra, ...]:
    extras = []
    for subject in subjects(entry, oci):
        for kind in TAG_KINDS:
            tag = extra_tag(kind, subject)
            if client.head_manifest(repo, tag) is None:
                continue
            data, media_type, digest = client.get_manifest(repo, tag)
            walk(client, repo, data, media_type, digest, oci)
            extras.append(ImageExtra(kind, subject, digest, media_type))
        index = client.referrers(repo, subject)
        if index is not None:  # the API's answer is the index the site serves under the fallback tag
            data, media_type, digest = index, media.OCI_INDEX, sha256_digest(index)
        elif client.head_manifest(repo, extra_tag("referrers", subject)) is not None:
            data, media_type, digest = client.get_manifest(repo, extra_tag("referrers", subject))
        else:
            continue
        if media_type in media.INDEX_TYPES and media.index_children(data):
            walk(client, repo, data, media_type, digest, oci)
            extras.append(ImageExtra("referrers", subject, digest, media_type))
    return tuple(extras)
