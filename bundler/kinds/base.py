"""The content-kind interface: what one kind of content (container images, Helm charts, Git
repositories, OS/VM updates, OCI artifacts) supplies to the pipeline, as a record of small roles.

build, verify, import, inspect, diff, receipts and deltas iterate over the registered kinds
(bundler/kinds/__init__.py) and name none of them. A kind (`Kind`) is its names, its bundle.json
entry type, and the roles it has, each a class in a module of its own package, loaded when first
asked for (so `bundler verify` never loads a kind's build side, nor `bundler import` its server):

- `build`: its profile items (`parse_spec` per item, problems with file:line; `check_specs`;
  `parse_setting`) and their collection (`collect`) into the shared OCI layout or as its own payloads;
- `format`: what of its entries is the release (`content`), what the OCI layout holds for it
  (`oci_tops`), its own graph checks, and a delta's base (`base_from_*`);
- `admit`: what a site refuses before anything is staged; `stage`: its share of an import, staged
  until published (`stage` -> `Staged`), the dry-run plan, the counts; `publish`: where its OCI content
  goes in the site registry and what it writes after the registry;
- `serve`: its site service (routes, the front's rules, its entry in `site status`, what it keeps
  on disk, what changes the status page); `prune`: what a prune frees of it;
- `commands` and `options`: what it adds to the command line, to `import` and to `site init`;
  `settings`: its own section of site.yaml; `receipt`: its fields in a site's receipt;
  `report`: SBOM, `inspect` and `diff` rows and their text, an import's summary and plan.

Every role method has a neutral default, so a kind writes only the roles, and in them the methods,
it has.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Generic, Protocol, TypeVar, cast, overload

from packageurl import PackageURL

from bundler.bundle.kinds import Entry, EntryType
from bundler.bundle.sbom import SbomItem
from bundler.errors import UsageError
from bundler.jsontypes import Doc, Out
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
    from bundler.site.config import SiteConfig
    from bundler.site.front import FrontRule
    from bundler.site.http import Accounts, Route
    from bundler.site.state import SiteState
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
    node_image: bool = False  # a container image a node's runtime runs (`site export --k3s` preloads it)


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
    requests: dict[str, list[str]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Part:
    """A kind's collected content: its bundle.json entries and its payloads outside the OCI layout
    (path in the bundle -> where it is). `for_base` makes what depends on a delta's base (git
    bundles); whether a delta leaves a payload to its parent is the kind's `payloads_defer`."""
    entries: tuple[Entry, ...] = ()
    payloads: dict[str, BlobSource] = field(default_factory=dict)

    def for_base(self, parent: Parent | None) -> Part:
        return self


class StageOptions(Protocol):
    """What a kind's staging reads of the import's options."""
    @property
    def jobs(self) -> int: ...  # parallel work

    @property
    def kinds(self) -> dict[str, dict[str, object]]: ...  # each kind's own options (import_options), by its key


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


@dataclass(frozen=True)
class ServiceInfo:
    """A kind's site service as `site status` shows it: where clients find it, and what else they need."""
    url: str
    fields: Mapping[str, Out] = field(default_factory=dict)


class Shown(Protocol):
    """A kind's share of a result (a dry run's plan, a diff): its fields in the JSON, its lines for people."""

    def to_dict(self) -> Doc: ...

    def lines(self) -> list[str]: ...


class Role:
    """One role of a kind, made by the kind's record for the kind it serves (`self.kind`: its key,
    titles and entry type). Every method has a neutral default: a kind's role writes what it has."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind


SpecT = TypeVar("SpecT")  # what a kind's profile items parse to
EntryT = TypeVar("EntryT", bound="Entry")  # its bundle.json entries
ValueT = TypeVar("ValueT")  # its section of site.yaml, parsed


class Build(Role, Generic[SpecT]):
    """The profile's `spec.<key>` items and their collection: build-side, loaded when a profile is read."""

    settings: ClassVar[tuple[str, ...]] = ()  # further `spec` keys this kind reads (e.g. imagePolicy)
    collect_order: ClassVar[int] = 0  # lower collects first (a kind that asks another for items goes first)
    example: ClassVar[str] = ""  # its `spec` section for `bundler init`: commented YAML that validates as is

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> SpecT | None:
        """One profile item (problems with file:line through `check`), or None."""
        raise NotImplementedError(f"the {self.kind.key} kind has no profile items")

    def check_specs(self, check: Checker, specs: Sequence[tuple[SpecT, int]], line: int) -> None:
        """Across the items (each with its line; `line`: the list's): duplicates and the like."""

    def parse_setting(self, check: Checker, key: str, value: object, line: int) -> object:
        """One of `settings`, as Profile.settings[key] holds it."""
        return value

    def collect(self, context: CollectContext, specs: Sequence[SpecT]) -> Part:
        return Part()


class Format(Role, Generic[EntryT]):
    """What the format (bundle.json, the content digest, the verifier, a delta's base) asks of it."""

    def check_entries(self, manifest: BundleManifest) -> None:
        """Raise untrusted.Malformed naming the field when entries and files disagree."""

    def content(self, entries: Sequence[EntryT]) -> Sequence[Out]:
        """What of the entries is the release (for the content digest), sorted."""
        return sorted([entry.to_dict() for entry in entries], key=repr)

    def oci_tops(self, entries: Sequence[EntryT]) -> list[OciTop]:
        """What the OCI layout holds for it: each manifest is graph-checked by the verifier."""
        return []

    def graph_problems(self, reader: BundleReader, manifest: BundleManifest, read_packs: bool) -> list[Problem]:
        """Beyond the OCI graphs (the verifier checks those): e.g. each git bundle against bundle.json."""
        return []

    def base_from_receipt(self, receipt: Obj) -> Hashable | None:
        """What a delta builds on, from a receipt's fields (`Parent.bases[key]`)."""
        return None

    def base_from_entries(self, entries: Sequence[EntryT]) -> Hashable | None:
        return None


class Admit(Role):
    """What a site refuses of a bundle that verified, before anything is staged."""

    def site_problems(self, site: SiteConfig, manifest: BundleManifest) -> list[Problem]:
        """Before any payload is read (e.g. a delta's Git base the site lacks)."""
        return []

    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """Content whose bytes and graphs verified but this site does not take (names another bundle
        owns, images its image keys cover without a valid signature)."""
        return []

    def judged(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Doc]:
        """What the site's policy judged of this kind's content, and by whom (`verify --site --json`)."""
        return []

    def missing(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        """A delta's base this kind needs on the site and the site lacks (beyond registry blobs)."""
        return []

    def hand_over(self, site: SiteConfig, subject: str, to: str) -> str | None:
        """`site hand-over`: give `subject` (as this kind's refusals name it: `files/<name>`) to bundle
        name `to` and return its previous owner; None when the subject is none of this kind's names.
        Called under the site's files lock."""
        return None


class Stage(Role):
    """Its share of an import: staged where no client sees it until the import publishes."""

    def present(self, site: SiteConfig, manifest: BundleManifest) -> bool:
        """Is everything it holds of this bundle on the site (beyond the registry)?"""
        return True

    def unchanged(self, manifest: BundleManifest) -> dict[str, int]:
        """Import counts when the whole bundle is already on the site."""
        return {self.kind.counted: len(manifest.entries(self.kind.key))}

    def streamed(self, manifest: BundleManifest) -> set[str]:
        """Payload paths `stage` hashes as it reads them (the verifier does not read them again)."""
        return set()

    def plan(self, site: SiteConfig, manifest: BundleManifest) -> tuple[Shown | None, int]:
        """(what a dry run shows of it, bytes it would write under the site directory)."""
        return None, 0

    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        return Staged()

    def leftovers(self, site: SiteConfig, manifest: BundleManifest) -> list[str]:
        """After a refused or failed import: what of this bundle it stored that nothing references (by
        sha256, recorded for a prune)."""
        return []


class Publish(Role, Generic[EntryT]):
    """Where its OCI content goes in the site registry, and what it writes once the registry published."""

    def site_artifacts(self, entries: Sequence[EntryT], site: SiteConfig) -> list[Artifact]:
        return []

    def sources(self, entries: Sequence[EntryT]) -> list[str]:
        """Source registry hosts the cluster should mirror from the site registry."""
        return []

    def published(self, site: SiteConfig, manifest: BundleManifest) -> None:
        """After the registry published (e.g. the Flux source that names its home on the site)."""


class Serve(Role):
    """Its site service: what `site init` makes, the application's routes, the front's rules, its
    entry in `site status`, what it keeps on disk and what changes the status page."""

    def init_site(self, site: SiteConfig) -> None:
        """What this kind keeps on a new site (`site init`), before its site.yaml is written."""

    def routes(self, site: SiteConfig, accounts: Accounts) -> list[Route]:
        """Its own site service's routes on the site's HTTPS application (`/<prefix>/...`)."""
        return []

    def front(self, site: SiteConfig) -> list[FrontRule]:
        """What the site's front does for its routes beyond the defaults (16 KiB bodies): larger
        bodies, and directories it sends files from after the application's `X-Accel-Redirect`."""
        return []

    def services(self, site: SiteConfig) -> dict[str, ServiceInfo]:
        """Its services in `site status` and on the page, by name (`git`): each its `url` and what its
        clients need. Their health is the HTTPS service's."""
        return {}

    def stored(self, site: SiteConfig) -> dict[str, Path]:
        """The directories it keeps content in under the site, by name (disk use is reported per name)."""
        return {}

    def watched(self, site: SiteConfig) -> list[Path]:
        """Files and directories whose change alters what it shows on the status page (`receipt`)."""
        return []


class Prune(Role):
    """Its share of `site prune`."""

    def prune(self, site: SiteConfig, kept: Sequence[BundleManifest], leftovers: Sequence[str]) -> Pruning:
        """What a prune frees of its content: what no kept release (`kept`: their manifests) holds,
        and `leftovers` (what refused imports left, by the names `leftovers` gave)."""
        return Pruning()


class Commands(Role):
    """The commands it adds to the command line: loaded when `bundler` lists its commands."""

    def commands(self) -> list[tuple[str, click.Command]]:
        """Commands it adds to `bundler`, each with the group it goes in ("" the top, "site client")."""
        return []


class Options(Role):
    """The options it adds to `bundler import` and `bundler site init`: loaded when they are built."""

    def import_options(self) -> list[click.Option]:
        """Options it adds to `bundler import`; their values reach `stage` as `options.kinds[<key>][<name>]`."""
        return []

    def site_init_options(self) -> list[click.Option]:
        """Options it adds to `bundler site init`; their values reach its settings role's `create`."""
        return []


class Settings(Role, Generic[ValueT]):
    """Its own section of site.yaml (`<key>:`), a value of its own type: parsed when a site is read
    (it is registered with the site, as the format role is with the format), written back, and made
    at `site init`. A kind with nothing to configure names no settings role."""

    def parse(self, section: Mapping[str, object], directory: Path) -> ValueT | None:
        """The section as site.yaml holds it ({} when absent); ValueError naming what is wrong."""
        return None

    def dump(self, value: ValueT) -> Doc | None:
        """The section to write (None: leave it out)."""
        return None

    def create(self, options: Mapping[str, object]) -> tuple[ValueT | None, dict[str, bytes]]:
        """A new site's section from `site init`'s values of its options (UsageError naming the
        option), and the files it keeps in the site directory, by path in it."""
        return self.parse({}, Path()), {}


def option_values(options: Mapping[str, object], name: str) -> tuple[object, ...]:
    """A repeatable option's values as click gave them (none: empty)."""
    value = options.get(name)
    return tuple(value) if isinstance(value, tuple | list) else ()


class Receipt(Role):
    """What a site's receipt (and its status page) says of this kind."""

    titles: ClassVar[dict[str, str]] = {}  # headings of its receipt fields on the site's status page

    def receipt(self, site: SiteConfig, state: SiteState) -> Doc:
        return {}


class Report(Role, Generic[EntryT]):
    """Its rows in the SBOM, `inspect`, `diff`, and an import's summary and plan."""

    def sbom(self, entries: Sequence[EntryT]) -> list[SbomItem]:
        return []

    def inspect_rows(self, entries: Sequence[EntryT]) -> list[Doc]:
        """Its rows in `inspect --json`."""
        return [entry.to_dict() for entry in entries]

    def lines(self, entries: Sequence[EntryT]) -> list[str]:
        """What `inspect` (and the status page) shows of these entries."""
        return []

    def diff(self, old: Sequence[EntryT], new: Sequence[EntryT]) -> Shown:
        """What changed of it between two bundles (`bundler diff`)."""
        return changes(self.kind.noun, {}, {})

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        key = self.kind.counted
        if not (added.get(key) or unchanged.get(key) or self.kind.always_reported):
            return ""
        return f"{added.get(key, 0)} {self.kind.title} added, {unchanged.get(key, 0)} unchanged; "


# The fixed fields of the reports whose rows are keyed by kind (inspect, diff, prune and its bytes
# freed, an import's counts): a kind's key or count key may not be one of them, or its rows would
# overwrite the field (a kind named `bytes`, `diff`'s total).
RESERVED_KEYS = frozenset({
    "bytes", "new", "old",  # diff
    "content_digest", "created", "expires", "manifest_digest", "name", "parent", "payload_bytes", "requires",
    "signer_names", "signers", "size", "version",  # inspect
    "bytes_freed", "dry_run", "keep", "leftovers", "manifests", "releases", "registry",  # prune
    "blobs", "extras"})  # an import's counts (blobs: the registry's; extras: what travels with images)

ROLES: dict[str, type[Role]] = {"build": Build, "format": Format, "admit": Admit, "stage": Stage,
                                "publish": Publish, "serve": Serve, "prune": Prune, "commands": Commands,
                                "options": Options, "settings": Settings, "receipt": Receipt, "report": Report}
R = TypeVar("R", bound=Role)


def subject_name(rule: Callable[[str], str], name: str) -> str:
    """A hand-over's subject checked as the site's names are (`rule`: bundler.names): a clear error."""
    try:
        return rule(name)
    except ValueError as exc:
        raise UsageError(f"not a name on this site: {exc}", hint=HAND_OVER_HINT) from None


HAND_OVER_HINT = "give the subject as the refusal names it: files/<name>, git/<name>.git or <repository>:<tag>"


def role_modules(package: str, **classes: str) -> dict[str, str]:
    """Roles kept by the convention: role `name` is class `classes[name]` in module `package.name`
    (`role_modules(__name__, build="ChartBuild")`: bundler.kinds.charts.build:ChartBuild)."""
    return {name: f"{package}.{name}:{cls}" for name, cls in classes.items()}


class RoleOf(Generic[R]):
    """A kind's role attribute (`kind.report`): what `Kind.role` loads for the attribute's name."""

    def __init__(self, base: type[R]) -> None:
        self.base = base
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, kind: None, owner: type) -> RoleOf[R]: ...

    @overload
    def __get__(self, kind: Kind, owner: type) -> R: ...

    def __get__(self, kind: Kind | None, owner: type) -> RoleOf[R] | R:
        return self if kind is None else kind.role(self.name, self.base)


@dataclass(frozen=True, eq=False)
class Kind:
    """A kind of content: what names it, its bundle.json entry type, and its roles, each a class
    named by "module:Class" (a subclass of the role in ROLES), loaded the first time it is asked for:
    `bundler verify` loads the format role, never the build's. A role it does not name is the neutral
    one (a kind without a site service has no `serve`)."""

    key: str  # spec key in profiles, key in bundle.json, and in inspect/diff/import JSON
    title: str  # plural, for people: "git repositories"
    noun: str  # singular, for diff lines: "repo"
    entry_type: EntryType  # `parse(Obj)` makes its bundle.json entries
    roles: Mapping[str, str] = field(default_factory=dict)
    in_v1: bool = False  # bundle format v1 always lists it (bundle.json, content digest)
    payload_pattern: str = ""  # bundle paths of its payloads outside the OCI layout (a regex)
    always_reported: bool = False  # reports show it even when there is none
    count_key: str = ""  # its key in import's added/unchanged (default: `key`)
    # a delta leaves a payload its parent holds identically to the parent; False: each base gets its
    # own (a git bundle is made against the tips the base holds)
    payloads_defer: bool = True

    def __post_init__(self) -> None:
        taken = {self.key, self.counted} & RESERVED_KEYS
        if taken:
            raise TypeError(f"the kind {self.key!r} takes the name {sorted(taken)[0]!r}, a field of bundler's "
                            "reports its rows sit beside: give it another key")
        unknown = set(self.roles) - set(ROLES)
        if unknown:
            raise TypeError(f"the {self.key} kind names roles bundler does not have: {', '.join(sorted(unknown))}")

    @property
    def counted(self) -> str:
        return self.count_key or self.key

    def role(self, name: str, base: type[R]) -> R:
        """Its `name` role, loaded once from its module (the neutral `base` when it names none)."""
        loaded = self.__dict__.get(f"_role_{name}")
        if loaded is None:
            where = self.roles.get(name)
            cls: type[Role] = base
            if where is not None:
                module, _, attribute = where.partition(":")
                cls = getattr(importlib.import_module(module), attribute)
                if not (isinstance(cls, type) and issubclass(cls, base)):
                    raise TypeError(f"the {self.key} kind's {name} role {where} is not a {base.__name__}")
            loaded = self.__dict__[f"_role_{name}"] = cls(self)
        return cast(R, loaded)

    # its roles, each loaded from its module when first asked for (`kind.stage.plan(...)`)
    build = RoleOf(Build)
    format = RoleOf(Format)
    admit = RoleOf(Admit)
    stage = RoleOf(Stage)
    publish = RoleOf(Publish)
    serve = RoleOf(Serve)
    prune = RoleOf(Prune)
    commands = RoleOf(Commands)
    options = RoleOf(Options)
    settings = RoleOf(Settings)
    receipt = RoleOf(Receipt)
    report = RoleOf(Report)


@dataclass(frozen=True)
class Changed:
    name: str
    old: str
    new: str


@dataclass(frozen=True)
class Changes:
    """What `diff` reports of a kind whose entries are names with a version or digest: names added,
    removed, and changed (old -> new)."""
    noun: str  # for people: "image"
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[Changed, ...]

    def to_dict(self) -> Doc:
        return {"added": self.added, "removed": self.removed,
                "changed": [{"name": c.name, "old": c.old, "new": c.new} for c in self.changed]}

    def lines(self) -> list[str]:
        """`  + noun name`, `  - noun name`, `  ~ noun name: old -> new`."""
        out = [f"  + {self.noun} {name}" for name in self.added]
        out += [f"  - {self.noun} {name}" for name in self.removed]
        out += [f"  ~ {self.noun} {c.name}: {c.old} -> {c.new}" for c in self.changed]
        return out


def changes(noun: str, old: Mapping[str, str], new: Mapping[str, str]) -> Changes:
    """`old` and `new`: name -> version (or digest) of each entry."""
    return Changes(noun, tuple(sorted(set(new) - set(old))), tuple(sorted(set(old) - set(new))),
                   tuple(Changed(k, old[k], new[k]) for k in sorted(set(old) & set(new)) if old[k] != new[k]))
