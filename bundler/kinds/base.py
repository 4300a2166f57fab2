"""The content-kind interface: what one kind of content (container images, Helm charts, Git
repositories, OS/VM updates, OCI artifacts) supplies to the pipeline.

build, verify, import, inspect, diff, receipts and deltas iterate over the registered kinds
(bundler/kinds/__init__.py) and name none of them. A kind supplies:

- its profile spec (`spec.<key>`): `parse_spec` per item (problems with file:line), `check_specs`;
- its bundle.json entries (`entry_type`, under `<key>`), and what of them is the release (`content`);
- collection (`collect`) into the shared OCI layout (`CollectContext.oci`) or as its own payloads;
- what the OCI layout holds for it (`oci_tops`: each manifest is graph-checked by the verifier),
  its own graph checks (`graph_problems`), and what the site refuses (`site_problems`);
- seeding: where its OCI content goes in the site registry (`site_artifacts`), its own staging and
  publication (`stage` -> `Staged`), and what it writes after the registry (`published`);
- the dry-run plan and disk need (`plan`), a delta's base (`missing`, `base_from_*`), receipt content;
- its site service, if it has one: the application's routes (`routes`), what the front does for them
  (`front`), its entry in `site status` (`service`), what it keeps on disk (`stored`), what changes the
  status page (`watched`), and what a prune frees of it (`prune`);
- `inspect` / `diff` rows and their text.

Every method has a neutral default, so a kind writes only what it has.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, cast

from packageurl import PackageURL

from bundler.bundle.sbom import SbomItem
from bundler.oci.layout import OciTop
from bundler.oci.reference import ImageReference

if TYPE_CHECKING:
    import click
    import requests

    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.parent import Parent
    from bundler.bundle.reader import BundleReader
    from bundler.oci.client import RegistryClient
    from bundler.oci.content import BlobSource, OciContent
    from bundler.problems import Problem
    from bundler.profile import Checker, Profile
    from bundler.site.config import SiteConfig, SiteState
    from bundler.site.front import FrontRule
    from bundler.site.http import Accounts, Route
    from bundler.untrusted import Obj


@dataclass(frozen=True)
class Artifact:
    """One top manifest the site registry gets: where it goes and under which tag."""
    kind: str  # the kind's key (import counts it there)
    ref: str  # how the bundle names it (for messages)
    digest: str
    media_type: str
    repo: str
    tag: str | None
    release_tag: bool = True  # a release owns it (rollback per tag); False: derived from a digest (sha256-<hex>.sig)


def oci_item(ref: str, digest: str, type: str, *properties: tuple[str, str]) -> SbomItem:
    """What an OCI manifest is in the SBOM: purl `pkg:oci/<name>@<digest>?repository_url=...&tag=...`."""
    parsed = ImageReference.parse(ref)
    repository = f"{parsed.host}/{parsed.repository}"
    purl = PackageURL("oci", name=parsed.repository.rsplit("/", 1)[-1].lower(), version=digest,
                      qualifiers={"repository_url": repository, **({"tag": parsed.tag} if parsed.tag else {})})
    return SbomItem(repository, parsed.tag or digest, type, purl, digest.split(":", 1)[1], None, properties)


@dataclass
class CollectContext:
    """What a kind's collection works with. `requests`: items other kinds ask this one to collect
    too, by kind key (a chart with `images: auto` asks for the images it declares)."""
    profile: Profile
    oci: OciContent
    client_for: Callable[[str], RegistryClient]
    session: requests.Session
    staging: Path
    base: Path  # the profile's directory: relative paths in it
    jobs: int
    requests: dict[str, list[Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Part:
    """A kind's collected content: its bundle.json entries and its payloads outside the OCI layout
    (path in the bundle -> where it is). With `deferrable`, a delta leaves a payload its parent
    holds identically to the parent. `for_base` makes what depends on a delta's base (git bundles)."""
    entries: tuple[Any, ...] = ()
    payloads: dict[str, BlobSource] = field(default_factory=dict)
    deferrable: bool = True

    def for_base(self, parent: Parent | None) -> Part:
        return self


class StageOptions(Protocol):
    """What a kind's staging reads of the import's options."""
    @property
    def jobs(self) -> int: ...  # parallel work

    @property
    def kinds(self) -> dict[str, dict[str, Any]]: ...  # each kind's own options (import_options), by its key


class Staged:
    """A kind's share of an import, staged where no client sees it until `publish`."""
    def discard(self) -> None:
        """The import was refused or failed: undo what staging did (what it cannot, `leftovers` names)."""
    def publish(self) -> list[str]:
        """Make it visible (every byte of the bundle verified; the site's files lock held); returns
        notes for the user."""
        return []

    def counts(self) -> dict[str, tuple[int, int]]:
        """count key -> (added, unchanged)."""
        return {}


class Pruning:
    """A kind's share of `site prune`: what goes (`items`, for people; `bytes`), and the work, in
    prune's order: `delete` (frees space, writes nothing: safe on a full disk), `tidy` (after the
    registry's collector: housekeeping such as `git gc`), `record` (catalogs and indexes, under the
    site's files lock, once space is free)."""
    items: list[str]
    bytes: int = 0
    leftover_bytes: int = 0  # of what refused imports left (state.json's unreferenced[key])

    def __init__(self, items: Sequence[str] = (), bytes: int = 0, leftover_bytes: int = 0) -> None:
        self.items, self.bytes, self.leftover_bytes = list(items), bytes, leftover_bytes

    def delete(self) -> None:
        """Remove what goes."""

    def tidy(self) -> None:
        """Free what removing left unreachable."""

    def record(self) -> None:
        """Write down that it went."""


class Entry(Protocol):
    """A kind's bundle.json entry: `entry_type.parse(Obj)` makes one, totally."""
    def to_dict(self) -> dict[str, Any]: ...


SpecT = TypeVar("SpecT")  # what a kind's profile items parse to
EntryT = TypeVar("EntryT", bound=Entry)  # its bundle.json entries


class ContentKind(Generic[SpecT, EntryT]):
    """A kind over its profile spec (SpecT) and its bundle.json entries (EntryT). Its methods come in
    roles, grouped below: the profile and the format (parse, entries, content), collection (build),
    the verifier (OCI tops, graph checks, admission), the site (init, its service, staging,
    publication, prune), the command line, receipts and deltas, and reports (SBOM, inspect, diff)."""

    key: ClassVar[str]  # spec key in profiles, key in bundle.json, and in inspect/diff/import JSON
    title: ClassVar[str]  # plural, for people: "git repositories"
    noun: ClassVar[str]  # singular, for diff lines: "repo"
    entry_type: ClassVar[Any]  # parse(Obj) -> entry; entry.to_dict()
    in_v1: ClassVar[bool] = False  # bundle format v1 always lists it (bundle.json, content digest)
    payload_pattern: ClassVar[str] = ""  # bundle paths of its payloads outside the OCI layout (a regex)
    always_reported: ClassVar[bool] = False  # reports show it even when there is none
    count_key: ClassVar[str] = ""  # its key in import's added/unchanged (default: `key`)
    collect_order: ClassVar[int] = 0  # lower collects first (a kind that asks another for items goes first)
    example: ClassVar[str] = ""  # its `spec` section for `bundler init`: commented YAML that validates as is

    # --- profile ---------------------------------------------------------------------------------

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> SpecT | None:
        raise NotImplementedError

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        """Across the items (each with its line; `line`: the list's): duplicates and the like."""
    settings: ClassVar[tuple[str, ...]] = ()  # further `spec` keys this kind reads (e.g. imagePolicy)

    def parse_setting(self, check: Checker, key: str, value: Any, line: int) -> Any:
        """One of `settings`, as Profile.settings[key] holds it."""
        return value

    # --- bundle.json -----------------------------------------------------------------------------

    def entries(self, manifest: BundleManifest) -> tuple[EntryT, ...]:
        """Its entries in a bundle.json (parsed with `entry_type`)."""
        return cast("tuple[EntryT, ...]", manifest.entries(self.key))

    def check_entries(self, manifest: BundleManifest) -> None:
        """Raise untrusted.Malformed naming the field when entries and files disagree."""
    def content(self, entries: Sequence[EntryT]) -> list[Any]:
        """What of the entries is the release (for the content digest), sorted."""
        return sorted([entry.to_dict() for entry in entries], key=repr)

    # --- build -----------------------------------------------------------------------------------

    def collect(self, context: CollectContext, specs: Sequence[SpecT]) -> Part:
        return Part()

    # --- the OCI layout, the verifier ------------------------------------------------------------

    def oci_tops(self, entries: Sequence[EntryT]) -> list[OciTop]:
        return []

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        """Beyond the OCI graphs (the verifier checks those): e.g. each git bundle against bundle.json."""
        return []

    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """What this site refuses of content whose bytes and graphs verified (images its image keys
        cover without a valid signature); runs before anything is staged."""
        return []

    def site_problems(self, site: SiteConfig, manifest: BundleManifest) -> list[Problem]:
        """What this site refuses before any payload is read (e.g. a delta's Git base it lacks)."""
        return []

    # --- the site --------------------------------------------------------------------------------

    def init_site(self, site: SiteConfig) -> None:
        """What this kind keeps on a new site (`site init`), before its site.yaml is written."""

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        """Its own site service's routes on the site's HTTPS application (`/<prefix>/...`)."""
        return []

    def front(self, site: SiteConfig) -> list[FrontRule]:
        """What the site's front does for its routes beyond the defaults (16 KiB bodies): larger
        bodies, and directories it sends files from after the application's `X-Accel-Redirect`."""
        return []

    def services(self, site: SiteConfig) -> dict[str, dict[str, Any]]:
        """Its services in `site status` and on the page, by name (`git`): each its `url` and what its
        clients need. Their health is the HTTPS service's."""
        return {}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        """The directories it keeps content in under the site, by name (disk use is reported per name)."""
        return {}

    def watched(self, site: SiteConfig) -> list[Path]:
        """Files and directories whose change alters what it shows on the status page (`receipt`)."""
        return []

    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        """What a prune frees of its content: what no kept release (`kept`: their manifests) holds,
        and `leftovers` (what refused imports left, by the names `leftovers` gave)."""
        return Pruning()
    def site_artifacts(self, entries: Sequence[EntryT], site: SiteConfig) -> list[Artifact]:
        return []

    def sources(self, entries: Sequence[EntryT]) -> list[str]:
        """Source registry hosts the cluster should mirror from the site registry."""
        return []

    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        """Is everything it holds of this bundle on the site (beyond the registry)?"""
        return True

    def unchanged(self, manifest: BundleManifest) -> dict[str, int]:
        """Import counts when the whole bundle is already on the site."""
        return {self.count_key or self.key: len(manifest.entries(self.key))}

    def streamed(self, manifest: BundleManifest) -> set[str]:
        """Payload paths `stage` hashes as it reads them (the verifier does not read them again)."""
        return set()

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        """A delta's base this kind needs on the site and the site lacks (beyond registry blobs)."""
        return []

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[dict[str, Any], int]:
        """(dry-run plan fields, bytes it would write under the site directory)."""
        return {}, 0

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        return Staged()

    def leftovers(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        """After a refused or failed import: what of this bundle it stored that nothing references (by
        sha256, recorded for a prune)."""
        return []

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        """After the registry published (e.g. the Flux source that names its home on the site)."""
    # --- the command line ------------------------------------------------------------------------

    def commands(self) -> list[tuple[str, click.Command]]:
        """Commands it adds to `bundler`, each with the group it goes in ("" the top, "site client"):
        the updates kind's `updates` group and `site client windows`."""
        return []

    def import_options(self) -> list[click.Option]:
        """Options it adds to `bundler import` (repos: `--force-refs`); their values reach `stage` as
        `options.kinds[<key>][<name>]`."""
        return []

    # --- receipts and deltas ---------------------------------------------------------------------

    receipt_titles: ClassVar[dict[str, str]] = {}  # headings of its receipt fields on the site's status page

    def receipt(self, site: SiteConfig, state: SiteState) -> dict[str, Any]:
        """Fields this kind adds to a site receipt (and to the site's status page)."""
        return {}

    def base_from_receipt(self, receipt: Obj) -> Hashable | None:
        """What a delta builds on, from a receipt's fields (`Parent.bases[key]`)."""
        return None

    def base_from_entries(self, entries: Sequence[EntryT]) -> Hashable | None:
        return None

    # --- reports ---------------------------------------------------------------------------------

    def sbom(self, entries: Sequence[EntryT]) -> list[SbomItem]:
        """Its components in the bundle's SBOM."""
        return []

    def inspect_rows(self, entries: Sequence[EntryT]) -> list[dict[str, Any]]:
        return [entry.to_dict() for entry in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        return []

    def diff(self, old: Sequence[EntryT], new: Sequence[EntryT]) -> dict[str, Any]:
        return changes({}, {})

    def diff_lines(self, diff: dict[str, Any]) -> list[str]:
        """`  + noun name`, `  - noun name`, `  ~ noun name: old -> new` from a `changes` dict."""
        out = [f"  + {self.noun} {name}" for name in diff["added"]]
        out += [f"  - {self.noun} {name}" for name in diff["removed"]]
        out += [f"  ~ {self.noun} {c['name']}: {c['old']} -> {c['new']}" for c in diff["changed"]]
        return out

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        key = self.count_key or self.key
        if not (added.get(key) or unchanged.get(key) or self.always_reported):
            return ""
        return f"{added.get(key, 0)} {self.title} added, {unchanged.get(key, 0)} unchanged; "

    def plan_lines(self, plan: dict[str, Any]) -> list[str]:
        return []


def changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What diff reports of a kind: names added, removed, and changed (old -> new)."""
    return {"added": sorted(set(new) - set(old)), "removed": sorted(set(old) - set(new)),
            "changed": [{"name": k, "old": old[k], "new": new[k]} for k in sorted(set(old) & set(new))
                        if old[k] != new[k]]}
