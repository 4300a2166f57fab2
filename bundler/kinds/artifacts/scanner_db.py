"""Vulnerability databases carried for the cluster's scanners, and how fresh they are: Trivy's
database (`ghcr.io/aquasecurity/trivy-db:2`, an OCI artifact whose layer
`application/vnd.aquasec.trivy.db.layer.v1.tar+gzip` holds `trivy.db` and `metadata.json`) copied as
any artifact, with the time it was built read from its own `metadata.json` (`UpdatedAt`). A profile's
`maxAge` refuses a stale one at build, naming its date (as Grype refuses a database older than its
max age); the site serves it from its registry under the same name (`trivy --db-repository
SITE/ghcr.io/aquasecurity/trivy-db`), and its receipt and page say how old it is.

The layer is downloaded once, here, into the build's staging directory: the bundle is written from
that copy (its digest checked as it was fetched), not fetched a second time."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from bundler import names
from bundler.errors import IntegrityError, RefusedError
from bundler.oci import media
from bundler.oci.client import RegistryClient
from bundler.oci.content import BlobSource, OciContent
from bundler.units import age_text

TRIVY_DB_LAYER = "application/vnd.aquasec.trivy.db.layer.v1.tar+gzip"
DATABASES = {TRIVY_DB_LAYER: "trivy-db"}
MAX_METADATA = 1 << 16
_FRACTION = re.compile(r"(\.\d+)")


@dataclass(frozen=True)
class Database:
    """A carried vulnerability database: which (trivy-db) and when it was built."""
    kind: str
    built: str  # as bundler writes times (UTC, whole seconds, Z)

    def age(self, now: dt.datetime | None = None) -> dt.timedelta:
        return (now or dt.datetime.now(dt.UTC)) - names.parse_time(self.built)


def database_layer(manifest: bytes) -> tuple[str, str, int] | None:
    """(kind, digest, size) of a vulnerability database layer in an artifact's manifest, if it has one."""
    for layer in media.image_blobs(manifest)[1:]:
        if layer.media_type in DATABASES:
            return DATABASES[layer.media_type], layer.digest, layer.size
    return None


def built_at(archive: Path) -> str:
    """When the database in `archive` (a tar.gz) was built: its metadata.json's UpdatedAt."""
    try:
        with tarfile.open(fileobj=gzip.open(archive), mode="r|") as tar:
            for member in tar:
                if member.name.lstrip("./") == "metadata.json" and member.isreg() and member.size <= MAX_METADATA:
                    extracted = tar.extractfile(member)
                    doc = json.loads(extracted.read() if extracted else b"")
                    stamp = _FRACTION.sub("", str(doc["UpdatedAt"])).replace("Z", "+00:00")  # nanoseconds: dropped
                    return names.format_time(dt.datetime.fromisoformat(stamp))
    except (OSError, EOFError, tarfile.TarError, ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{archive.name}: not a vulnerability database archive ({exc})") from None
    raise IntegrityError(f"{archive.name}: its database archive holds no metadata.json (when was it built?)")


def stage_database(client: RegistryClient, repository: str, manifest: bytes, oci: OciContent, staging: Path,
                   origin: str, max_age: dt.timedelta | None) -> Database | None:
    """The database an artifact carries, downloaded once into `staging` (the bundle is written from
    that copy), its build time read; RefusedError when it is older than `max_age`."""
    found = database_layer(manifest)
    if found is None:
        return None
    kind, digest, size = found
    staging.mkdir(parents=True, exist_ok=True)
    path = staging / f"{kind}-{digest.split(':', 1)[1]}.tar.gz"
    with open(path, "wb") as out:
        def write(offset: int, chunk: bytes) -> None:
            out.seek(offset)
            out.write(chunk)

        client.fetch_blob(repository, digest, size, write)  # its digest checked as it streams
    oci.prefer(BlobSource(digest, size, origin, path=path))
    database = Database(kind, built_at(path))
    if max_age is not None and database.age() > max_age:
        raise RefusedError(f"artifact {origin}: its {kind} was built {database.built} ({age_text(database.age())} "
                           f"ago), older than its maxAge ({age_text(max_age)})",
                           hint="copy a fresh one to the source registry (`oras copy ghcr.io/aquasecurity/trivy-db:2 "
                                "...`), or raise maxAge; nothing was written")
    return database
