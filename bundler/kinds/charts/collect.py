"""Helm charts: from classic chart repositories (index.yaml + .tgz) and from OCI registries.

Each chart goes into the bundle's OCI layout exactly as `helm push` stores one: an OCI manifest whose
config is the Chart.yaml metadata as JSON (`application/vnd.cncf.helm.config.v1+json`) and whose
layer is the original .tgz, byte for byte (plus the provenance file when the repository has one).
An OCI chart is copied as it is, so its manifest digest stays the upstream one. Charts are small:
they are held in memory, and every archive is checked before anything in it is believed.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO, cast
from urllib.parse import urljoin

import requests

from bundler.errors import BundlerError, IntegrityError, NotFoundError, UsageError
from bundler.kinds.charts.entry import ChartEntry
from bundler.kinds.charts.spec import ChartSpec
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.content import OciContent, fetch_small_blob
from bundler.oci.reference import ImageReference, ReferenceError
from bundler.retry import get_bytes
from bundler.untrusted import Malformed, load_yaml
from bundler.versions import Version, VersionRange

log = logging.getLogger(__name__)

HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
HELM_PROV = "application/vnd.cncf.helm.chart.provenance.v1.prov"
MAX_INDEX = 100 << 20
MAX_CHART_YAML = 8 << 20  # Chart.yaml, values.yaml
MAX_ARCHIVE = 50 << 20
MAX_UNPACKED = 200 << 20  # a .tgz that inflates past this is refused (decompression bomb)
MAX_DEPTH = 5

# chart.Metadata's fields in the order Helm's JSON encoder writes them
METADATA_FIELDS = ("name", "home", "sources", "version", "description", "keywords", "maintainers", "icon",
                   "apiVersion", "condition", "tags", "appVersion", "deprecated", "annotations", "kubeVersion",
                   "dependencies", "type")


@dataclass(frozen=True)
class ChartArchive:
    """What bundler reads from a chart archive: its metadata, values and vendored dependencies."""

    metadata: dict[str, object]
    values: object
    vendored: frozenset[str]  # names under charts/ (directories, and .tgz file names)

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", ""))

    def is_vendored(self, dependency: str) -> bool:
        return any(v == dependency or v.startswith(f"{dependency}-") for v in self.vendored)


class Inflated:
    """The decompressed stream of a chart archive, read in order; past MAX_UNPACKED bytes actually
    inflated (headers, PAX records and skipped data included, whatever the headers claim) it stops."""

    def __init__(self, stream: gzip.GzipFile, origin: str) -> None:
        self.stream = stream
        self.origin = origin
        self.total = 0

    def read(self, size: int = -1) -> bytes:
        budget = MAX_UNPACKED - self.total
        data = self.stream.read(budget + 1 if size < 0 or size > budget else size)
        self.total += len(data)
        if self.total > MAX_UNPACKED:
            raise IntegrityError(f"chart archive from {self.origin} inflates past {MAX_UNPACKED >> 20} MiB")
        return data


def read_archive(tgz: bytes, origin: str) -> ChartArchive:
    """Read a chart .tgz without extracting it; refuse unsafe members and decompression bombs."""
    files: dict[str, bytes] = {}
    vendored: set[str] = set()
    top: set[str] = set()
    total = 0
    try:
        inflated = Inflated(gzip.GzipFile(fileobj=io.BytesIO(tgz)), origin)
        with tarfile.open(fileobj=cast(IO[bytes], inflated), mode="r|") as tar:
            for info in tar:
                name = info.name
                parts = name.strip("/").split("/")
                if name.startswith("/") or ".." in parts or "\\" in name:
                    raise IntegrityError(f"chart archive from {origin} contains an unsafe path {name!r}",
                                         hint="this archive tries to write outside its directory; do not use it")
                if not (info.isreg() or info.isdir()):
                    raise IntegrityError(f"chart archive from {origin} contains {name!r}, a link or special file")
                total += info.size
                if total > MAX_UNPACKED:
                    raise IntegrityError(f"chart archive from {origin} inflates past {MAX_UNPACKED >> 20} MiB")
                top.add(parts[0])
                if len(parts) >= 3 and parts[1] == "charts":
                    vendored.add(parts[2].removesuffix(".tgz"))
                if info.isreg() and len(parts) == 2 and parts[1] in ("Chart.yaml", "values.yaml"):
                    extracted = tar.extractfile(info)
                    files[parts[1]] = extracted.read() if extracted else b""
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise IntegrityError(f"chart archive from {origin} is not a gzip'd tar: {exc}") from None
    if len(top) != 1 or "Chart.yaml" not in files:
        raise IntegrityError(f"chart archive from {origin} is not a chart (one directory with a Chart.yaml)")
    parsed: dict[str, object] = {}
    for name in ("Chart.yaml", "values.yaml"):
        try:
            parsed[name] = load_yaml(files[name], MAX_CHART_YAML) if name in files else None
        except Malformed as exc:
            raise IntegrityError(f"chart archive from {origin}: {name}: {exc}") from None
    metadata, values = parsed["Chart.yaml"], parsed["values.yaml"]
    if not isinstance(metadata, dict) or not metadata.get("name") or not metadata.get("version"):
        raise IntegrityError(f"chart archive from {origin}: Chart.yaml has no name and version")
    return ChartArchive(metadata, values, frozenset(vendored))


def helm_config(metadata: dict[str, object]) -> bytes:
    """Chart.yaml metadata as the JSON `helm push` stores as the artifact's config."""
    ordered = {k: metadata[k] for k in METADATA_FIELDS if metadata.get(k) not in (None, "", [], {}, False)}
    ordered["name"] = metadata["name"]
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def helm_manifest(config: bytes, tgz: bytes, prov: bytes | None, metadata: dict[str, object]) -> bytes:
    """The OCI manifest `helm push` writes, with the annotations it derives from Chart.yaml."""
    layers = [{"mediaType": HELM_CHART, "digest": _sha(tgz), "size": len(tgz)}]
    if prov is not None:
        layers.append({"mediaType": HELM_PROV, "digest": _sha(prov), "size": len(prov)})
    annotations = {"org.opencontainers.image.title": str(metadata["name"]),
                   "org.opencontainers.image.version": str(metadata["version"])}
    if metadata.get("description"):
        annotations["org.opencontainers.image.description"] = str(metadata["description"])
    if metadata.get("home"):
        annotations["org.opencontainers.image.url"] = str(metadata["home"])
    sources = metadata.get("sources")
    if isinstance(sources, list) and sources:
        annotations["org.opencontainers.image.source"] = str(sources[0])
    doc = {"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
           "config": {"mediaType": HELM_CONFIG, "digest": _sha(config), "size": len(config)},
           "layers": layers, "annotations": annotations}
    return json.dumps(doc, separators=(",", ":")).encode()


def _sha(data: bytes) -> str:
    return sha256_digest(data)


# --- images a chart declares ----------------------------------------------------------------------


def declared_images(archive: ChartArchive) -> tuple[list[str], list[str]]:
    """(image references, things that looked like images but are not valid references).

    From the `artifacthub.io/images` annotation and from values.yaml: `image: repo:tag` strings and
    `{registry, repository, tag}` / `{repository, tag}` maps (an empty tag means the appVersion, as
    most charts' templates do). Templates are not rendered: images only a template names are missed.
    """
    found: list[str] = []
    annotations = archive.metadata.get("annotations") or {}
    listed = annotations.get("artifacthub.io/images") if isinstance(annotations, dict) else None
    if isinstance(listed, str):
        try:
            images = load_yaml(listed.encode(), MAX_CHART_YAML) or []
            for item in images if isinstance(images, list) else []:
                if isinstance(item, dict) and isinstance(item.get("image"), str):
                    found.append(item["image"])
        except Malformed:
            log.warning("chart %s: artifacthub.io/images is not YAML; ignored", archive.name)
    app_version = str(archive.metadata.get("appVersion") or "")

    def walk(node: object) -> None:
        if isinstance(node, dict):
            image = node.get("image")
            if isinstance(image, str) and image:
                found.append(image)
            repository = node.get("repository")
            if isinstance(repository, str) and repository and {"tag", "registry", "digest"} & node.keys():
                registry = node.get("registry")
                tag = str(node.get("tag") or app_version)
                digest = node.get("digest")
                ref = f"{registry}/{repository}" if isinstance(registry, str) and registry else repository
                if isinstance(digest, str) and digest:
                    found.append(f"{ref}@{digest}")
                elif tag:
                    found.append(f"{ref}:{tag}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(archive.values)
    valid, invalid = [], []
    for text in dict.fromkeys(found):
        try:
            ImageReference.parse(text)
            valid.append(text)
        except ReferenceError:
            invalid.append(text)
    return valid, invalid


# --- sources ----------------------------------------------------------------------------------------


class ChartRepository:
    """A classic chart repository: an index.yaml listing versions and archive URLs."""

    def __init__(self, url: str, session: requests.Session) -> None:
        self.url = url.rstrip("/")
        self.session = session
        self._index: dict[str, list[dict[str, object]]] | None = None

    def index(self) -> dict[str, list[dict[str, object]]]:
        if self._index is None:
            data = get_bytes(self.session, f"{self.url}/index.yaml", MAX_INDEX, f"index of chart repository {self.url}")
            try:
                doc = load_yaml(data, MAX_INDEX)
                entries = doc["entries"] if isinstance(doc, dict) else None
                if not isinstance(entries, dict) or not all(isinstance(v, list) for v in entries.values()):
                    raise TypeError("entries is not a mapping of lists")
            except (Malformed, KeyError, TypeError) as exc:
                raise IntegrityError(f"chart repository {self.url}: index.yaml is not a valid chart index ({exc})",
                                     hint="check the repository URL; it must serve a Helm index.yaml") from None
            self._index = entries
        return self._index

    def resolve(self, name: str, wanted: VersionRange) -> dict[str, object]:
        versions = self.index().get(name)
        if not versions:
            raise UsageError(f"chart repository {self.url} has no chart {name!r}",
                             hint=f"charts there: {', '.join(sorted(self.index())[:20]) or 'none'}")
        by_version: dict[Version, dict[str, object]] = {}
        unreadable: list[str] = []
        for entry in versions:
            try:
                by_version[Version.helm(str(entry.get("version")))] = entry
            except ValueError:
                unreadable.append(repr(entry.get("version")))  # Helm cannot select it either
        best = wanted.best(list(by_version))
        if best is None:
            available = ", ".join(str(v) for v in sorted(by_version, reverse=True)[:15]) or "none"
            skipped = f"; not versions: {', '.join(unreadable[:10])}" if unreadable else ""
            raise UsageError(f"no version of chart {name} in {self.url} matches {wanted}; "
                             f"available: {available}{skipped}",
                             hint="change the version (or range) of this chart in the profile")
        return by_version[best]

    def download(self, entry: dict[str, object], origin: str) -> tuple[bytes, bytes | None]:
        urls = entry.get("urls")
        if not isinstance(urls, list) or not urls or not isinstance(urls[0], str):
            raise IntegrityError(f"chart repository {self.url}: {origin} has no archive URL in index.yaml")
        url = urljoin(self.url + "/", urls[0])
        tgz = get_bytes(self.session, url, MAX_ARCHIVE, f"chart archive {origin}")
        expected = entry.get("digest")
        actual = hashlib.sha256(tgz).hexdigest()
        if isinstance(expected, str) and expected:
            if expected.removeprefix("sha256:") != actual:
                raise IntegrityError(f"chart archive {url}: sha256 is {actual}, index.yaml says {expected}",
                                     hint="the repository serves a different file than its index lists; do not use it")
        else:
            log.warning("chart %s: index.yaml lists no digest; the bundle records sha256:%s", origin, actual)
        try:
            prov: bytes | None = get_bytes(self.session, url + ".prov", 1 << 20, f"provenance of {origin}", retries=0)
        except (NotFoundError, BundlerError):
            prov = None
        return tgz, prov


@dataclass
class ChartCollection:
    """What collecting the charts gave: their entries, the images they declare, notes for the user."""
    entries: list[ChartEntry] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # from charts with `images: auto`
    notes: list[str] = field(default_factory=list)  # what to tell the user (images found, skipped)


@dataclass(frozen=True)
class _Request:
    """A chart to fetch: a profile item or a dependency of one (with its depth and who asked for it)."""
    source: str  # repository URL, or "oci"
    name: str
    wanted: VersionRange | None
    ref: ImageReference | None
    dependencies: bool
    images: bool
    depth: int = 0
    requested: str = ""


def collect_charts(specs: Sequence[ChartSpec], collection: OciContent,
                   client_for: Callable[[str], RegistryClient]) -> ChartCollection:
    """Resolve, download and check every chart (and, when asked, its dependencies)."""
    result = ChartCollection()
    session = requests.Session()
    session.headers["User-Agent"] = "bundler"
    repositories: dict[str, ChartRepository] = {}
    done: set[str] = set()
    queue = [_Request(s.repo or "oci", s.name or "", s.version, s.ref, s.dependencies, s.images,
                      requested=str(s.version) if s.version else str(s.ref)) for s in specs]
    while queue:
        request = queue.pop(0)
        if request.ref is not None:
            entry, archive = _collect_oci(request.ref, client_for(request.ref.host), collection)
        else:
            repo = repositories.setdefault(request.source, ChartRepository(request.source, session))
            entry, archive = _collect_repo(repo, request, collection)
        entry = ChartEntry(entry.name, entry.version, entry.source, entry.digest, entry.tgz_digest,
                           requested=request.requested,
                           images=tuple(_images(archive, result)) if request.images else ())
        if entry.digest in done:
            continue
        done.add(entry.digest)
        result.entries.append(entry)
        result.images += [i for i in entry.images if i not in result.images]
        if request.dependencies:
            queue += _dependencies(archive, request, entry, client_for)
    return result


def _images(archive: ChartArchive, result: ChartCollection) -> list[str]:
    valid, invalid = declared_images(archive)
    result.notes.append(f"chart {archive.name} {archive.version} declares images: {', '.join(valid) or 'none'}")
    if invalid:
        result.notes.append(f"chart {archive.name}: not image references, skipped: {', '.join(invalid)}")
    return valid


Collected = tuple[ChartEntry, ChartArchive]


def _same_version(a: str, b: str) -> bool:
    try:
        return Version.helm(a) == Version.helm(b)
    except ValueError:
        return False


def _collect_repo(repo: ChartRepository, request: _Request, collection: OciContent) -> Collected:
    assert request.wanted is not None
    entry = repo.resolve(request.name, request.wanted)
    origin = f"{request.name} {entry.get('version')} from {repo.url}"
    tgz, prov = repo.download(entry, origin)
    archive = read_archive(tgz, origin)
    if archive.name != request.name or not _same_version(archive.version, str(entry["version"])):
        raise IntegrityError(f"{origin}: the archive's Chart.yaml says {archive.name} {archive.version}",
                             hint="the repository's index and its archive disagree; do not use it")
    config = helm_config(archive.metadata)
    manifest = helm_manifest(config, tgz, prov, archive.metadata)
    for blob in (config, tgz, manifest, *((prov,) if prov is not None else ())):
        collection.add_small_blob(_sha(blob), blob)
    return ChartEntry(archive.name, archive.version, repo.url, _sha(manifest), _sha(tgz)), archive


def _collect_oci(ref: ImageReference, client: RegistryClient, collection: OciContent) -> Collected:
    data, media_type, digest = client.get_manifest(ref.repository, ref.digest or ref.tag or "latest")
    origin = f"oci://{ref}"
    try:
        blobs = media.image_blobs(data) if media_type == media.OCI_MANIFEST else []
    except media.ManifestError as exc:
        raise BundlerError(f"{origin}: {exc}") from None
    if not blobs or blobs[0].media_type != HELM_CONFIG:
        raise UsageError(f"{origin} is not a Helm chart (its config is not {HELM_CONFIG})",
                         hint="list container images under spec.images, charts under spec.charts")
    tgz = None
    collection.add_small_blob(digest, data)
    for blob in blobs:
        if blob.size > MAX_ARCHIVE:
            raise IntegrityError(f"{origin}: blob {blob.digest} is {blob.size} bytes, too large for a chart")
        content = fetch_small_blob(client, ref.repository, blob)
        collection.add_small_blob(blob.digest, content)
        if blob.media_type == HELM_CHART:
            tgz = content
    if tgz is None:
        raise IntegrityError(f"{origin} has no chart layer ({HELM_CHART})")
    archive = read_archive(tgz, origin)
    return ChartEntry(archive.name, archive.version, origin, digest, _sha(tgz)), archive


def _dependencies(archive: ChartArchive, request: _Request, parent: ChartEntry,
                  client_for: Callable[[str], RegistryClient]) -> list[_Request]:
    if request.depth >= MAX_DEPTH:
        raise UsageError(f"chart {parent.name}: dependencies nest deeper than {MAX_DEPTH}")
    out = []
    listed = archive.metadata.get("dependencies")
    for dep in listed if isinstance(listed, list) else []:
        if not isinstance(dep, dict) or not dep.get("name"):
            continue
        name, constraint = str(dep["name"]), str(dep.get("version") or "*")
        repository = str(dep.get("repository") or "")
        if archive.is_vendored(name):
            continue  # shipped inside the parent's archive (charts/)
        try:
            wanted = VersionRange(constraint)
        except ValueError as exc:
            raise IntegrityError(
                f"chart {parent.name}: dependency {name} has a bad version {constraint!r}: {exc}") from None
        requested = f"{constraint} (dependency of {parent.name} {parent.version})"
        if repository.startswith(("https://", "http://")):
            out.append(_Request(repository.rstrip("/"), name, wanted, None, True, request.images, request.depth + 1,
                                requested))
        elif repository.startswith("oci://"):
            ref = _oci_dependency(repository, name, wanted, client_for)
            out.append(_Request("oci", name, None, ref, True, request.images, request.depth + 1, requested))
        else:
            raise UsageError(f"chart {parent.name}: dependency {name} comes from {repository or 'nowhere'!r}, "
                             "which bundler cannot fetch",
                             hint="vendor it into the chart (helm dependency build) or give an https:// or oci:// URL")
    return out


def _oci_dependency(repository: str, name: str, wanted: VersionRange,
                    client_for: Callable[[str], RegistryClient]) -> ImageReference:
    """An OCI dependency's version may be a range: list the tags and take the highest match."""
    try:
        base = ImageReference.parse(posixpath.join(repository.removeprefix("oci://"), name) + ":0")
    except ReferenceError as exc:
        raise UsageError(
            f"dependency {name}: repository {repository!r} is not a valid oci:// location: {exc}") from None
    tags = client_for(base.host).list_tags(base.repository)
    versions = {}
    for tag in tags:
        try:
            versions[Version.helm(tag.replace("_", "+"))] = tag
        except ValueError:
            continue
    best = wanted.best(list(versions))
    if best is None:
        raise UsageError(f"no version of chart {name} in {repository} matches {wanted}; "
                         f"available: {', '.join(sorted(tags)) or 'none'}")
    return ImageReference(base.host, base.repository, versions[best])
