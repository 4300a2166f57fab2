"""What the fleet reads of the documents its sites sign: a site's receipt (what it runs, its update
clients, its disk and services) and its sync report (its last sync from the hub). Each is untrusted
until its signature is checked (store.py): `parse` reads it totally, Malformed naming the field; the
fleet keeps only what parsed and verified, and reads it back with the same `parse`."""

from __future__ import annotations

from dataclasses import dataclass

from bundler import names
from bundler.bundle.parent import RECEIPT_KIND
from bundler.jsontypes import Json
from bundler.untrusted import Malformed, Obj

REPORT_KIND = "bundler/sync-report/v1"  # a site's signed word on its last sync from the hub


@dataclass(frozen=True)
class ClientSaid:
    """An update client of a site, as the site's receipt counts it."""
    client: str
    lacking: int  # approved updates it lacks
    failed: int  # a Windows client's steps that failed
    reboot_pending: bool
    aksee_version: str | None

    @classmethod
    def parse(cls, d: Obj) -> ClientSaid:
        return cls(d.string("client", names.text), len(list(d.array("lacking"))), len(list(d.array("failed"))),
                   d.boolean("reboot_pending", default=False), d.string("aksee_version", names.text, default=None))


@dataclass(frozen=True)
class SiteReceipt:
    """A site's receipt: the releases it imported (in order: the last of a name runs), its update
    clients, and its disk and services as it said them (kept as said: `fleet status` shows them)."""
    site: str
    created: str
    keyid: str  # the site key that signed it
    releases: tuple[tuple[str, str, str], ...]  # (name, version, manifest digest), in import order
    clients: tuple[ClientSaid, ...]
    disk: Json  # {total, used, free}
    services: Json  # {service: healthy}
    image_verdicts: Json = None  # what the site's image policy judged of the releases it runs (as said)
    scanner_databases: Json = None  # the vulnerability databases it carries, and their age (as said)

    @property
    def running(self) -> dict[str, str]:
        """The version of each bundle name the site runs (its latest import)."""
        return {name: version for name, version, _ in self.releases}

    def runs(self, name: str, version: str, manifest_digest: str) -> bool:
        return (name, version, manifest_digest) in self.releases

    @property
    def used_percent(self) -> int | None:
        """How full its disk is, as the site's page counts it (total - free); None when not said."""
        disk = self.disk if isinstance(self.disk, dict) else {}
        total, free = disk.get("total"), disk.get("free")
        if isinstance(total, int) and isinstance(free, int) and total > 0:
            return round(100 * (total - free) / total)
        return None

    @property
    def down(self) -> list[str]:
        """The services it said do not answer."""
        return [name for name, ok in (self.services if isinstance(self.services, dict) else {}).items() if ok is False]

    @classmethod
    def parse(cls, doc: Obj) -> SiteReceipt:
        if doc.value.get("kind") != RECEIPT_KIND:
            raise Malformed(f"kind is not {RECEIPT_KIND!r}")
        releases = []
        for item in doc.array("bundles"):
            release = item.obj()
            releases.append((release.string("name", names.bundle_name), release.string("version", names.version),
                             release.string("manifest_digest", default="")))
        if (disk := doc.obj("disk", default=None)) is not None:  # what status shows of it: whole numbers
            for field in ("total", "used", "free"):
                disk.integer(field, default=None)
        if (services := doc.obj("services", default=None)) is not None:
            for _, healthy in services.entries():
                healthy.boolean()
        return cls(doc.string("site", names.site_name), doc.string("created", names.timestamp),
                   doc.obj("signature").string("keyid", names.sha256_hex), tuple(releases),
                   tuple(ClientSaid.parse(item.obj()) for item in doc.array("clients")),
                   doc.value.get("disk"), doc.value.get("services"), doc.value.get("image_verdicts"),
                   doc.value.get("scanner_databases"))


@dataclass(frozen=True)
class SyncReport:
    """A site's signed word on its last sync from the hub."""
    site: str
    created: str
    keyid: str
    state: str  # imported, current, waiting, outside-window, failed
    message: str
    bytes: int  # fetched from the hub
    bytes_per_second: float | None
    rollout: tuple[str, str] | None  # (name, version) of the rollout it read

    @classmethod
    def parse(cls, doc: Obj) -> SyncReport:
        if doc.value.get("kind") != REPORT_KIND:
            raise Malformed(f"kind is not {REPORT_KIND!r}")
        about = doc.obj("rollout", default=None)
        return cls(doc.string("site", names.site_name), doc.string("created", names.timestamp),
                   doc.obj("signature").string("keyid", names.sha256_hex), doc.string("state", names.text),
                   doc.string("message", names.text), doc.integer("bytes", default=0),
                   doc.number("bytes_per_second", default=None),
                   (about.string("name", default=""), about.string("version", default="")) if about else None)
