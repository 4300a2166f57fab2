"""The hub: any OCI registry between the connected side and the sites, trusted with nothing.

`publish` pushes a bundle (single or split) as an OCI artifact: its bytes cut into layers of at most
LAYER_SIZE (downloads resume by Range and run in parallel), plus a small layer holding the parts index
a site writes beside them, so that the layers as downloaded *are* a split bundle and `import` reads
them as it reads any. Rollouts (`fleet.rollout`) and site receipts travel as one-layer artifacts.

`sync` is a site pulling its own bundle: the signed rollout (the site's trust policy, a serial that
never goes back, an expiry), its wave, its target (its delta, else the full), every byte bounded by
the sizes the rollout names, downloaded into the site's staging area at most at `max_rate`, only
within `window`, resumed where it stopped (a finished layer is never fetched again); then the same
import as `bundler import`, and the site's signed receipt (or, on failure, its signed report) pushed
back to the hub.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bundler import names
from bundler.bundle import parts as bundle_parts
from bundler.bundle.manifest import canonical_json
from bundler.bundle.parent import parent_label
from bundler.bundle.reader import BundleReader
from bundler.errors import BundlerError, IntegrityError, NotFoundError, RefusedError, UsageError
from bundler.fleet import rollout as rollouts
from bundler.fleet.documents import REPORT_KIND
from bundler.fsutil import atomic_write, pwrite_all
from bundler.jsontypes import Doc, Out
from bundler.names import digest_of, sha256_digest
from bundler.oci import media
from bundler.oci.client import Credentials, RegistryClient
from bundler.oci.reference import ImageReference, check_digest
from bundler.parallel import run_parallel
from bundler.signing import TrustPolicy
from bundler.site import identity
from bundler.site.config import load_site, read_registry_credentials
from bundler.site.service import SYNC_SETTINGS
from bundler.site.state import SiteState
from bundler.units import human
from bundler.untrusted import Malformed, Obj

BUNDLE_TYPE = "application/vnd.bundler.bundle.v1"
PART_MEDIA = "application/vnd.bundler.bundle.part.v1"  # a byte range of the bundle's tar
INDEX_MEDIA = "application/vnd.bundler.parts.v1+json"  # the parts index naming those ranges
RECEIPT_TYPE = "application/vnd.bundler.receipt.v1+json"
REPORT_TYPE = "application/vnd.bundler.sync-report.v1+json"
EMPTY = b"{}"
LAYER_SIZE = 16 << 20
ROLLOUT_TAG = "rollout"
RECEIPTS = "receipts"  # HOST/PATH/receipts/SITE: `latest` (its receipt) and `sync` (its last report)
SYNC_STATE = "sync.json"  # in the site's directory: the last sync, and the highest rollout serial seen
STAGING = Path("staging") / "hub"
MAX_DOC_BYTES = 64 << 20
ANNOTATION_TITLE = "org.opencontainers.image.title"


@dataclass(frozen=True)
class Hub:
    """`oci://HOST/PATH[:TAG]`: where bundles, rollouts and receipts live on the hub."""
    host: str
    repository: str
    tag: str | None = None

    @classmethod
    def parse(cls, text: str) -> Hub:
        if not text.startswith("oci://"):
            raise UsageError(f"{text!r} is not a hub: give oci://HOST/PATH[:TAG]", hint="oci://harbor.example/edge/store")
        if "/" not in text.removeprefix("oci://").strip("/"):
            raise UsageError(f"{text!r} names no repository on the hub: give oci://HOST/PATH[:TAG]",
                             hint="oci://harbor.example/edge/store")
        try:
            ref = ImageReference.parse(text.removeprefix("oci://"))
        except ValueError as exc:
            raise UsageError(f"{text!r} is not a hub: {exc}") from None
        if ref.digest:
            raise UsageError(f"{text!r}: a hub is named by repository (and tag), not by digest")
        return cls(ref.host, ref.repository, ref.tag if ":" in text.removeprefix("oci://").rsplit("/", 1)[-1] else None)

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}" + (f":{self.tag}" if self.tag else "")

    def receipts(self, site: str) -> str:
        return f"{self.repository}/{RECEIPTS}/{site}"

    def client(self, credentials: Path | None = None, ca: Path | None = None, jobs: int = 4,
               max_rate: float | None = None) -> RegistryClient:
        """A client of the hub; with `max_rate`, each connection's receive buffer holds about 1/8 s of it,
        so the link carries no more than the sync consumes (nothing runs ahead to be lost at a cut)."""
        account = read_registry_credentials(credentials) if credentials else None
        buffer = None if max_rate is None else max(32 << 10, min(4 << 20, int(max_rate / 8 / max(1, jobs))))
        return RegistryClient(self.host, credentials=account if isinstance(account, Credentials) else None,
                              bearer=account if isinstance(account, str) else None, ca_file=str(ca) if ca else None,
                              pool_size=max(4, jobs), receive_buffer=buffer)


@dataclass(frozen=True)
class Layer:
    """One layer of a hub artifact: a part of a bundle (its file name its title), or a document."""
    media_type: str
    digest: str
    size: int
    title: str = ""  # org.opencontainers.image.title: the file it is ("" for none)

    def to_dict(self) -> Doc:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size,
                **({"annotations": {ANNOTATION_TITLE: self.title}} if self.title else {})}

    @classmethod
    def parse(cls, d: Obj) -> Layer:
        notes = d.obj("annotations", default=None)
        return cls(d.string("mediaType", default=""), d.string("digest", check_digest), d.integer("size"),
                   notes.string(ANNOTATION_TITLE, default="") if notes is not None else "")


@dataclass(frozen=True)
class HubArtifact:
    """An artifact on the hub, as its manifest says: its layers and annotations."""
    layers: tuple[Layer, ...]
    annotations: Mapping[str, str]


EMPTY_CONFIG = Layer(media.OCI_EMPTY, sha256_digest(EMPTY), len(EMPTY))


def _push_empty_config(client: RegistryClient, repo: str) -> None:
    """An artifact's config blob (the two bytes {}), which its manifest names: pushed before it."""
    client.push_blob(repo, sha256_digest(EMPTY), len(EMPTY), lambda: iter([EMPTY]))


def _put_artifact(client: RegistryClient, repo: str, tag: str, artifact_type: str, layers: Sequence[Layer],
                  annotations: dict[str, str]) -> str:
    manifest = canonical_json({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "artifactType": artifact_type,
                               "config": EMPTY_CONFIG.to_dict(), "layers": [layer.to_dict() for layer in layers],
                               "annotations": annotations})
    client.put_manifest(repo, tag, manifest, media.OCI_MANIFEST)
    return sha256_digest(manifest)


def push_document(client: RegistryClient, repo: str, tag: str, artifact_type: str, data: bytes) -> str:
    """A small signed document (a rollout, a receipt, a report) as a one-layer artifact under `tag`."""
    digest = sha256_digest(data)
    client.push_blob(repo, digest, len(data), lambda: iter([data]))
    _push_empty_config(client, repo)
    return _put_artifact(client, repo, tag, artifact_type, [Layer(artifact_type, digest, len(data))],
                         {"org.opencontainers.image.created": names.format_time()})


def _artifact(client: RegistryClient, repo: str, reference: str, artifact_type: str) -> HubArtifact:
    data, _, _ = client.get_manifest(repo, reference)  # a digest reference is checked against the bytes
    where = f"{client.host}/{repo}:{reference}"
    try:
        doc = Obj.load(data, media.MAX_MANIFEST_BYTES)
        if doc.value.get("artifactType") != artifact_type:
            raise Malformed(f"its artifactType is not {artifact_type}")
        notes = doc.obj("annotations", default=None)
        return HubArtifact(tuple(Layer.parse(layer.obj()) for layer in doc.array("layers", required=True)),
                           {key: value.string() for key, value in notes.entries()} if notes is not None else {})
    except Malformed as exc:
        raise RefusedError(f"{where} is not a {artifact_type} artifact: {exc}") from None


def fetch_document(client: RegistryClient, repo: str, tag: str, artifact_type: str, limit: int) -> bytes | None:
    """The document under `tag`, or None when there is none; at most `limit` bytes, its digest checked."""
    try:
        doc = _artifact(client, repo, tag, artifact_type)
    except NotFoundError:
        return None
    if not doc.layers:
        raise RefusedError(f"{client.host}/{repo}:{tag} holds no document")
    size, digest = doc.layers[0].size, doc.layers[0].digest
    if size > limit:
        raise RefusedError(f"{client.host}/{repo}:{tag}: its document is {size} bytes, more than {limit}")
    out = bytearray(size)

    def write(offset: int, chunk: bytes) -> None:
        out[offset:offset + len(chunk)] = chunk

    client.fetch_blob(repo, digest, size, write)
    return bytes(out)


# --- publish ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Published:
    hub: Hub
    tag: str
    digest: str  # the artifact's manifest digest: what a rollout names
    size: int  # bytes of its layers
    layers: int
    name: str
    version: str
    manifest_digest: str  # the bundle.json's


def publish(bundle: Path, hub: Hub, client: RegistryClient, layer_size: int = LAYER_SIZE, jobs: int = 4,
            tags: Sequence[str] = ()) -> Published:
    """Push `bundle` (a file, or a split bundle's index or part) to the hub as one artifact, under each of
    `tags` (default: the hub's tag, else the bundle's version); the layers are uploaded once."""
    with BundleReader(bundle) as reader:
        manifest, _, manifest_digest = reader.manifest()
        file_name = reader.path.name
        if reader.parts is not None:
            file_name = reader.parts.index.name.removesuffix(bundle_parts.INDEX_SUFFIX)
        ranges = [(offset, min(layer_size, reader.size - offset)) for offset in range(0, reader.size, layer_size)]

        def push(item: tuple[int, tuple[int, int]]) -> Layer:
            number, (offset, size) = item

            def chunks() -> Iterator[bytes]:
                done = 0
                while done < size:
                    chunk = reader.pread(min(1 << 20, size - done), offset + done)
                    if not chunk:
                        raise IntegrityError(f"{bundle} is shorter than it was a moment ago")
                    done += len(chunk)
                    yield chunk

            hasher = hashlib.sha256()
            for chunk in chunks():
                hasher.update(chunk)
            digest = digest_of(hasher)
            if not client.blob_exists(hub.repository, digest):  # published before (under another tag)
                client.push_blob(hub.repository, digest, size, chunks)
            return Layer(PART_MEDIA, digest, size, f"{file_name}.part-{number:03d}")

        layers = run_parallel(push, list(enumerate(ranges)), jobs)
    index = bundle_parts.index_document(file_name, [(layer.title, layer.size, layer.digest.split(":", 1)[1])
                                                    for layer in layers], layer_size, manifest_digest)
    client.push_blob(hub.repository, sha256_digest(index), len(index), lambda: iter([index]))
    everything = [Layer(INDEX_MEDIA, sha256_digest(index), len(index), file_name + bundle_parts.INDEX_SUFFIX), *layers]
    tags = list(tags) or [hub.tag or manifest.version]
    notes = {"org.opencontainers.image.title": file_name, "org.opencontainers.image.version": manifest.version,
             "dev.bundler.name": manifest.name, "dev.bundler.manifest-digest": manifest_digest,
             **({"dev.bundler.base": parent_label(manifest.parent)} if manifest.parent else {})}
    _push_empty_config(client, hub.repository)  # once, whatever the number of tags
    for tag in tags:
        digest = _put_artifact(client, hub.repository, tag, BUNDLE_TYPE, everything, notes)
    return Published(hub, tags[0], digest, sum(layer.size for layer in everything), len(everything), manifest.name,
                     manifest.version, manifest_digest)


def target_of(client: RegistryClient, hub: Hub, tag: str) -> rollouts.Target:
    """What a rollout names of the bundle under `tag`: its artifact digest, size and bundle.json digest."""
    digest = client.head_manifest(hub.repository, tag)
    if digest is None:
        raise NotFoundError(f"{hub.host}/{hub.repository}:{tag} is not on the hub", hint="bundler publish BUNDLE ...")
    doc = _artifact(client, hub.repository, digest, BUNDLE_TYPE)
    return rollouts.Target(tag, digest, sum(layer.size for layer in doc.layers),
                           doc.annotations.get("dev.bundler.manifest-digest", ""))


# --- sync --------------------------------------------------------------------------------------------

WINDOW_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


@dataclass(frozen=True)
class Window:
    """`22:00-05:00`: the hours (local time) a site may download in; it may wrap past midnight."""
    start: dt.time
    end: dt.time

    @classmethod
    def parse(cls, text: str) -> Window:
        match = WINDOW_RE.match(text)
        if match is None:
            raise UsageError(f"--window {text!r} is not HH:MM-HH:MM", hint="--window 22:00-05:00")
        a, b, c, d = (int(g) for g in match.groups())
        return cls(dt.time(a, b), dt.time(c, d))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def open(self, now: dt.datetime | None = None) -> bool:
        moment = (now or dt.datetime.now()).time()
        if self.start <= self.end:
            return self.start <= moment < self.end
        return moment >= self.start or moment < self.end


def parse_rate(text: str) -> float:
    """`2MB/s`, `500KB/s`, `20Mbit/s` (per second; B bytes, bit bits; K M G decimal) -> bytes/second."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)(B|bit)(?:/s)?", text.strip(), re.IGNORECASE)
    if match is None or float(match[1]) <= 0:
        raise UsageError(f"--max-rate {text!r} is not a rate", hint="--max-rate 2MB/s (or 500KB/s, 20Mbit/s)")
    scale = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[match[2].upper()]
    return float(match[1]) * scale / (8 if match[3].lower() == "bit" else 1)


class OutsideWindow(BundlerError):
    """The download window closed: what was fetched stays, the next sync in the window goes on."""


class Throttle:
    """Every byte of a sync counted against `rate` (bytes/second, shared by the parallel downloads): a
    token bucket holding at most BURST seconds of credit, so a stall (a cut link) is not made up for
    by a burst above the rate afterwards; and the window checked as bytes arrive."""

    BURST = 1.0

    def __init__(self, rate: float | None, window: Window | None) -> None:
        self.rate, self.window = rate, window
        self._lock = threading.Lock()
        self._due = time.monotonic()  # when the bytes taken so far may have arrived, at the rate

    def take(self, n: int) -> None:
        if self.window is not None and not self.window.open():
            raise OutsideWindow(f"the download window {self.window} closed; the next sync in it goes on where "
                                "this one stopped")
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            self._due = max(self._due, now - self.BURST) + n / self.rate
            delay = self._due - now
        if delay > 0:
            time.sleep(delay)


@dataclass
class SyncOptions:
    site: Path
    hub: Hub
    credentials: Path | None = None
    ca: Path | None = None
    max_rate: float | None = None
    window: Window | None = None
    jobs: int = 4


@dataclass
class SyncResult:
    """What one sync did: `state` is imported, current, waiting, outside-window or failed. Kept in the
    site's sync.json as its last sync (with `next`, when a sync service will sync again)."""
    state: str
    message: str
    rollout: Mapping[str, Out] | None = None  # which rollout it read (name, version, serial, expires)
    bytes: int = 0  # fetched from the hub by this sync
    seconds: float = 0.0
    imported: Mapping[str, Out] | None = None  # what the import did (`import --json`)
    download_seconds: float = 0.0  # of `seconds`: fetching from the hub (the rest: the rollout, the import)
    at: str = field(default_factory=names.format_time)
    next: str | None = None

    @property
    def bytes_per_second(self) -> int | None:
        return int(self.bytes / self.download_seconds) if self.download_seconds > 0 else None

    def to_dict(self) -> Doc:
        return {"state": self.state, "message": self.message, "rollout": self.rollout, "bytes": self.bytes,
                "seconds": round(self.seconds, 2), "download_seconds": round(self.download_seconds, 2),
                "bytes_per_second": self.bytes_per_second, "at": self.at,
                **({"imported": self.imported} if self.imported else {}),
                **({"next": self.next} if self.next else {})}

    @classmethod
    def parse(cls, d: Obj) -> SyncResult:
        rollout, imported = d.obj("rollout", default=None), d.obj("imported", default=None)
        return cls(d.string("state"), d.string("message", default=""), rollout.value if rollout else None,
                   d.integer("bytes", default=0), d.number("seconds", default=0.0),
                   imported.value if imported else None, d.number("download_seconds", default=0.0),
                   d.string("at", default=""), d.string("next", default=None))

    def line(self) -> str:
        """What `site status` and the page say of it: what happened, when, and what it moved."""
        moved = f"; {human(self.bytes)} in {round(self.download_seconds, 2)} s" if self.bytes else ""
        rate = f" ({human(self.bytes_per_second)}/s)" if self.bytes_per_second else ""
        after = f"; next at {self.next}" if self.next else ""
        return f"{self.state} at {self.at}: {self.message}{moved}{rate}{after}"

    @property
    def good(self) -> bool:
        return self.state in ("imported", "current", "waiting", "outside-window")


@dataclass
class SyncState:
    """The site's sync.json: the highest serial of each rollout name it has seen (an older one is
    refused), the serial whose receipt the hub has, and the last sync."""
    serials: dict[str, int] = field(default_factory=dict)
    receipt_pushed_serial: int | None = None
    last: SyncResult | None = None

    def to_dict(self) -> Doc:
        return {**({"serials": self.serials} if self.serials else {}),
                **({"receipt_pushed_serial": self.receipt_pushed_serial}
                   if self.receipt_pushed_serial is not None else {}),
                **({"last": self.last.to_dict()} if self.last is not None else {})}

    @classmethod
    def load(cls, site_dir: Path) -> SyncState:
        """What the site's syncs kept (nothing yet, or an unreadable file: a fresh state)."""
        try:
            d = Obj.load((site_dir / SYNC_STATE).read_bytes(), 1 << 20)
            serials = d.obj("serials", default=None)
            last = d.obj("last", default=None)
            return cls({name: value.integer() for name, value in serials.entries()} if serials else {},
                       d.integer("receipt_pushed_serial", default=None), SyncResult.parse(last) if last else None)
        except (OSError, Malformed):
            return cls()

    def save(self, site_dir: Path) -> None:
        atomic_write(site_dir / SYNC_STATE, json.dumps(self.to_dict(), indent=1, sort_keys=True).encode())


def save_settings(options: SyncOptions, every: float) -> Path:
    """`site sync --service`: the hub, its account and the limits, kept for the site's sync service."""
    path = options.site / SYNC_SETTINGS
    atomic_write(path, json.dumps({
        "hub": str(options.hub), "every": every, "jobs": options.jobs, "max_rate": options.max_rate,
        "window": str(options.window) if options.window else None,
        "credentials": str(options.credentials.resolve()) if options.credentials else None,
        "ca": str(options.ca.resolve()) if options.ca else None}, indent=1).encode())
    return path


def load_settings(site_dir: Path) -> tuple[SyncOptions, float] | None:
    """What `site sync --service` kept, or None when it never ran."""
    try:
        doc = Obj.load((site_dir / SYNC_SETTINGS).read_bytes(), 1 << 16)
        credentials, ca = doc.string("credentials", default=None), doc.string("ca", default=None)
        window = doc.string("window", default=None)
        rate = doc.value.get("max_rate")
        options = SyncOptions(site_dir, Hub.parse(doc.string("hub")), Path(credentials) if credentials else None,
                              Path(ca) if ca else None, float(rate) if isinstance(rate, int | float) else None,
                              Window.parse(window) if window else None, doc.integer("jobs", 1, 64))
        every = doc.value.get("every")
        if not isinstance(every, int | float) or every <= 0:
            raise Malformed("every: not a number of seconds")
        return options, float(every)
    except FileNotFoundError:
        return None
    except (Malformed, OSError, ValueError) as exc:
        raise UsageError(f"{site_dir / SYNC_SETTINGS} is unreadable: {exc}",
                         hint="write it again: bundler site sync DIR --hub ... --every 15m --service") from None


def download(client: RegistryClient, hub: Hub, target: rollouts.Target, staging: Path, throttle: Throttle,
             jobs: int) -> tuple[Path, int]:
    """The target's layers into `staging` as a split bundle (its parts and index); what a previous sync
    left is kept (a finished part is not fetched again, a started one resumes by Range). Returns the
    index and the bytes fetched now."""
    layers = _artifact(client, hub.repository, target.digest, BUNDLE_TYPE).layers
    total = sum(layer.size for layer in layers)
    if total > target.size:  # endless data: the rollout bounds every byte
        raise RefusedError(f"the hub's artifact {target.digest} is {total} bytes; the rollout says {target.size}")
    if not layers or layers[0].media_type != INDEX_MEDIA:
        raise RefusedError(f"the hub's artifact {target.digest} does not start with its parts index")
    staging.mkdir(parents=True, exist_ok=True)
    fetched = [0]
    lock = threading.Lock()

    def file_of(layer: Layer) -> str:
        try:
            return names.file_name(layer.title)
        except ValueError as exc:
            raise RefusedError(f"the hub's artifact {target.digest}: layer title {exc}") from None

    def get(layer: Layer) -> None:
        final = staging / file_of(layer)
        digest, size = layer.digest, layer.size
        if final.exists() and final.stat().st_size == size:
            return  # fetched whole by an earlier sync (its digest was checked then; import checks it again)
        partial = final.with_name(final.name + ".partial")
        fd = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # a planted link is an error
        try:
            have, start = hashlib.sha256(), 0
            while chunk := os.pread(fd, 1 << 20, start):  # what an earlier sync fetched: hashed, not fetched again
                have.update(chunk)
                start += len(chunk)
            if start > size or (start == size and digest_of(have) != digest):
                os.ftruncate(fd, 0)  # not this layer's bytes (a corrupt fetch before): start over
                have, start = hashlib.sha256(), 0

            def write(offset: int, chunk: bytes) -> None:
                pwrite_all(fd, chunk, offset)
                with lock:
                    fetched[0] += len(chunk)
                throttle.take(len(chunk))

            if start < size:
                try:
                    client.fetch_blob(hub.repository, digest, size, write, have=have, start=start)
                except IntegrityError:
                    partial.unlink()  # the hub served other bytes: none of them is kept
                    raise
            os.fsync(fd)
        finally:
            os.close(fd)
        partial.rename(final)

    index_layer, *part_layers = layers
    run_parallel(get, [index_layer, *part_layers], jobs)
    index = staging / file_of(index_layer)
    try:
        doc_index = Obj.load(index.read_bytes(), bundle_parts.MAX_INDEX_BYTES)
        said = doc_index.string("manifest_digest")
    except (Malformed, OSError, ValueError) as exc:
        raise RefusedError(f"the hub's parts index is unreadable: {exc}") from None
    if said != target.manifest_digest:
        raise RefusedError(f"the hub's bundle is {said}; the rollout names {target.manifest_digest}",
                           hint="the hub serves another bundle than the signed rollout says: nothing was imported")
    return index, fetched[0]


def _report(site_dir: Path, site: str, result: SyncResult) -> bytes:
    doc: Doc = {"kind": REPORT_KIND, "site": site, "created": result.at, "state": result.state,
                "message": " ".join(result.message.split())[:2000], "rollout": result.rollout, "bytes": result.bytes,
                "bytes_per_second": result.bytes_per_second, "download_seconds": round(result.download_seconds, 2)}
    return canonical_json(identity.signed(doc, identity.load_site_key(site_dir)))


def sync(options: SyncOptions, do_import: Callable[[Path], Doc],
         receipt: Callable[[Path], Mapping[str, Out]], every: float | None = None) -> SyncResult:
    """One sync of a site from the hub (see the module's words). `do_import(index)` imports as
    `bundler import` does and returns its result; `receipt(site_dir)` is the site's signed receipt.
    The outcome is kept in the site's sync.json (with the next sync's time when a service syncs
    `every` so many seconds: in the same write, so `site status` never sees one without the other)
    and, signed by the site, pushed to the hub (a failure too, then raised)."""
    site = load_site(options.site)
    state = SyncState.load(site.directory)
    client = options.hub.client(options.credentials, options.ca, options.jobs, options.max_rate)
    started = time.monotonic()
    seen: list[rollouts.Rollout] = []
    try:
        result = _sync_once(options, site.directory, site.site_name, site.policy(), client, state, seen,
                            do_import, receipt)
    except OutsideWindow as exc:
        result = SyncResult("outside-window", str(exc))
    except BundlerError as exc:
        result = SyncResult("failed", str(exc), _summary(seen[0]) if seen else None,
                            seconds=time.monotonic() - started, next=_next(every))
        _finish(client, options.hub, site.directory, site.site_name, state, result)
        raise
    result.seconds, result.next = time.monotonic() - started, _next(every)
    _finish(client, options.hub, site.directory, site.site_name, state, result)
    return result


def _next(every: float | None) -> str | None:
    return names.format_time(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=every)) if every else None


def _summary(rollout: rollouts.Rollout) -> Doc:
    return {"name": rollout.name, "version": rollout.version, "serial": rollout.serial, "expires": rollout.expires}


def _finish(client: RegistryClient, hub: Hub, site_dir: Path, site: str, state: SyncState,
            result: SyncResult) -> None:
    state.last = result
    state.save(site_dir)
    if result.state in ("imported", "failed"):
        with contextlib.suppress(BundlerError):  # the hub does not answer either: the site's record says why
            push_document(client, hub.receipts(site), "sync", REPORT_TYPE, _report(site_dir, site, result))


def _sync_once(options: SyncOptions, site_dir: Path, name: str, policy: TrustPolicy, client: RegistryClient,
               state: SyncState, seen: list[rollouts.Rollout], do_import: Callable[[Path], Doc],
               receipt: Callable[[Path], Mapping[str, Out]]) -> SyncResult:
    if options.window is not None and not options.window.open():  # outside it, not a byte: not even the rollout
        return SyncResult("outside-window", f"outside the download window {options.window}; nothing was fetched")
    where = f"{options.hub.host}/{options.hub.repository}:{ROLLOUT_TAG}"
    data = fetch_document(client, options.hub.repository, ROLLOUT_TAG, rollouts.ARTIFACT_TYPE, rollouts.MAX_BYTES)
    if data is None:
        return SyncResult("waiting", f"no rollout on the hub at {where} yet")
    rollout = rollouts.read_signed(data, policy, where)
    seen.append(rollout)
    summary = _summary(rollout)
    highest = state.serials.get(rollout.name, 0)
    if rollout.serial < highest:
        raise RefusedError(f"the hub serves rollout {rollout.name} serial {rollout.serial}; this site has seen "
                           f"serial {highest}: an older rollout, refused",
                           hint="the hub was rolled back or is lying; nothing was fetched")
    state.serials[rollout.name] = rollout.serial
    if rollout.expired():
        raise RefusedError(f"rollout {rollout.name} {rollout.version} (serial {rollout.serial}) expired at "
                           f"{rollout.expires}; the site keeps running what it runs",
                           hint="ask release engineering to renew the rollout (the hub may be holding newer ones back)")
    wave, target = rollout.wave_of(name), rollout.target_for(name)
    if wave is None or target is None:
        return SyncResult("current", f"rollout {rollout.name} {rollout.version} does not name site {name}", summary)
    if rollout.state != "running":
        return SyncResult("waiting", f"rollout {rollout.name} {rollout.version} is {rollout.state}"
                          + (f": {rollout.reason}" if rollout.reason else ""), summary)
    if wave >= rollout.open:
        return SyncResult("waiting", f"rollout {rollout.name} {rollout.version}: wave {rollout.waves[wave].name} "
                          "is not open yet", summary)
    runs = {(b.name, b.version, b.manifest_digest) for b in SiteState.load(site_dir).live()}
    if (rollout.name, rollout.version, target.manifest_digest) in runs:
        if state.receipt_pushed_serial != rollout.serial:
            push_document(client, options.hub.receipts(name), "latest", RECEIPT_TYPE, canonical_json(receipt(site_dir)))
            state.receipt_pushed_serial = rollout.serial
        return SyncResult("current", f"site {name} runs {rollout.name} {rollout.version}", summary)
    staging = site_dir / STAGING / target.digest.split(":", 1)[1][:32]
    throttle = Throttle(options.max_rate, options.window)
    downloading = time.monotonic()
    index, fetched = download(client, options.hub, target, staging, throttle, options.jobs)
    download_seconds = time.monotonic() - downloading
    imported = do_import(index)
    push_document(client, options.hub.receipts(name), "latest", RECEIPT_TYPE, canonical_json(receipt(site_dir)))
    state.receipt_pushed_serial = rollout.serial
    shutil.rmtree(site_dir / STAGING, ignore_errors=True)  # imported: the parts are in the registry now
    return SyncResult("imported", f"imported {rollout.name} {rollout.version} from the hub", summary, fetched,
                      imported=imported, download_seconds=download_seconds)
