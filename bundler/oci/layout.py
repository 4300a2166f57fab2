"""The bundle's OCI image layout: `index.json` naming every image, readable by skopeo and friends.

The image spec asks readers to ignore index.json entries whose media type they do not know, and
readers do (skopeo skips Docker schema 2 entries). So an image whose top manifest is a Docker type is
named in index.json through a small OCI index "view" listing the original manifest(s) unchanged.
The view is an extra blob; the image itself, and its digest, are untouched.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from bundler.jsontypes import Doc
from bundler.names import sha256_digest
from bundler.oci import media

VIEW_ANNOTATION = "dev.bundler.view-of"


@dataclass(frozen=True)
class OciTop:
    """A top manifest (or index) a kind keeps in the bundle's OCI layout."""

    label: str  # how messages name it: "image docker.io/library/nginx:1.27"
    digest: str
    media_type: str
    name: str  # its org.opencontainers.image.ref.name in the layout's index.json
    platforms: tuple[str, ...] = ()  # a single-arch Docker manifest's platform (for its index.json view)


def _view(image: OciTop, data: bytes) -> bytes:
    if image.media_type == media.DOCKER_LIST:
        children: list[Doc] = [c.raw or {} for c in media.index_children(data)]
    else:
        child: Doc = {"mediaType": image.media_type, "digest": image.digest, "size": len(data)}
        if image.platforms:
            child["platform"] = media.platform_dict(image.platforms[0])
        children = [child]
    doc = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": children,
           "annotations": {VIEW_ANNOTATION: image.digest}}
    return json.dumps(doc, indent=1).encode()


def index_json(tops: list[OciTop], small_blobs: dict[str, bytes]) -> tuple[bytes, dict[str, bytes]]:
    """(index.json bytes, view blobs to add to the layout): each top manifest under its name."""
    entries, views = [], {}
    for top in tops:
        data = small_blobs[top.digest]
        media_type, digest, size = top.media_type, top.digest, len(data)
        if media_type in (media.DOCKER_MANIFEST, media.DOCKER_LIST):
            view = _view(top, data)
            media_type, digest, size = media.OCI_INDEX, sha256_digest(view), len(view)
            views[digest] = view
        entries.append({"mediaType": media_type, "digest": digest, "size": size,
                        "annotations": {media.REF_NAME_ANNOTATION: top.name}})
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries}
    return json.dumps(index, indent=1).encode(), views
