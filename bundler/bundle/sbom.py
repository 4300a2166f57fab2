"""The bundle's SBOM: `sbom.cdx.json`, CycloneDX 1.6 JSON made with cyclonedx-python-lib from what
each content kind lists (its report role's `sbom`): images (purl pkg:oci, digest), charts, Git refs,
updates (pkg:deb, pkg:rpm, generic; sha256), artifacts, and the image SBOMs the bundle carries. It
is listed in bundle.json like any payload, so it is signed; the site keeps each one under DIR/sbom/."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from packageurl import PackageURL

from bundler import __version__

MEDIA_TYPE = "application/vnd.cyclonedx+json"


@dataclass(frozen=True)
class SbomItem:
    """One component of the bundle's SBOM, as a content kind lists it (its report role's `sbom`)."""

    name: str
    version: str
    type: str  # a CycloneDX component type: container, application, data, file, machine-learning-model
    purl: PackageURL | None = None
    sha256: str | None = None  # hex
    sha1: str | None = None  # hex (a Git commit)
    properties: tuple[tuple[str, str], ...] = ()


def make_sbom(name: str, version: str, created: dt.datetime, items: Sequence[SbomItem]) -> bytes:
    """The SBOM of release NAME VERSION; the same content gives the same document."""
    # cyclonedx-python-lib costs 0.1 s to import, and every command imports this module (SbomItem)
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    def component(item: SbomItem, index: int) -> Component:
        hashes = [HashType(alg=HashAlgorithm.SHA_256, content=item.sha256)] if item.sha256 else []
        hashes += [HashType(alg=HashAlgorithm.SHA_1, content=item.sha1)] if item.sha1 else []
        return Component(name=item.name, version=item.version, type=ComponentType(item.type),
                         bom_ref=f"{index}-{item.type}-{item.name}@{item.version}"[:200],
                         purl=item.purl, hashes=hashes,
                         properties=[Property(name=k, value=v) for k, v in item.properties])

    bundle = Component(name=name, version=version, type=ComponentType.APPLICATION, bom_ref=f"bundle-{name}@{version}",
                       properties=[Property(name="bundler:version", value=__version__)])
    serial = uuid.uuid5(uuid.NAMESPACE_URL, f"bundler:{name}:{version}:{created.isoformat()}")
    components = [component(item, i) for i, item in enumerate(items)]
    bom = Bom(serial_number=serial, metadata=BomMetaData(component=bundle, timestamp=created), components=components)
    bom.register_dependency(bundle, components)  # the bundle holds each of them
    return JsonV1Dot6(bom).output_as_string(indent=1).encode()
