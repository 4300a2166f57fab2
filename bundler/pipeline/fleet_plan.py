"""What each site of a fleet needs of a release, for `fleet plan` and `build --for-fleet` alike: nothing
(its receipt shows the release), a full bundle (it holds nothing), or a delta on what its receipt
holds, sites holding the same files and Git tips sharing one. The bytes follow the build's delta rule
(pipeline/build.py `left_to_parent`): from a profile exactly what the build writes, from a release's
full bundle (or bundle.json) what bundle.json tells of it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bundler.bundle import layout
from bundler.bundle.parent import Parent, load_manifest, read_parent
from bundler.errors import UsageError
from bundler.fleet.store import Fleet
from bundler.jsontypes import Doc
from bundler.keyfiles import load_signing_key
from bundler.pipeline.build import BuildOptions, BuildResult, collecting, delta_bytes
from bundler.pipeline.hub import Hub, publish


class Needs(StrEnum):
    NOTHING = "nothing"  # it runs the release
    FULL = "full"  # it holds nothing
    DELTA = "delta"  # a delta on what its receipt holds


@dataclass(frozen=True)
class SiteNeed:
    site: str
    needs: Needs
    base: str | None = None  # what the delta builds on (its receipt's label)
    bytes: int = 0

    def to_dict(self) -> Doc:
        return {"site": self.site, "needs": str(self.needs),
                **({"base": self.base} if self.needs != Needs.NOTHING else {}), "bytes": self.bytes}


@dataclass(frozen=True)
class BaseGroup:
    """Sites whose receipts hold the same files and Git tips: one bundle brings them all to the release."""
    parent: Parent
    sites: list[str]


def group_sites(name: str, version: str, receipts: dict[str, Path]) -> tuple[list[str], list[BaseGroup]]:
    """The sites that run release NAME VERSION already, and the others by base, in the receipts' order."""
    current: list[str] = []
    groups: dict[tuple[object, ...], BaseGroup] = {}
    for site, path in receipts.items():
        parent = read_parent(path)
        if (name, version) in parent.releases:
            current.append(site)
            continue
        key = (tuple(sorted((p, e.sha256) for p, e in parent.files.items())), tuple(sorted(parent.bases.items())))
        groups.setdefault(key, BaseGroup(parent, []))
        groups[key].sites.append(site)
    return current, list(groups.values())


@dataclass(frozen=True)
class ReleasePlan:
    name: str
    version: str
    sites: list[SiteNeed]

    def to_dict(self) -> Doc:
        return {"name": self.name, "version": self.version, "sites": [s.to_dict() for s in self.sites]}


def plan_release(release: Path, fleet_dir: Path) -> ReleasePlan:
    """What each site of the fleet at `fleet_dir` needs of RELEASE (a profile, or a release's full bundle
    or bundle.json); each distinct base is sized once."""
    if not fleet_dir.is_dir():
        raise UsageError(f"there is no fleet at {fleet_dir}",
                         hint="`bundler fleet add RECEIPT...` makes it (or give it with --fleet DIR)")
    receipts = Fleet(fleet_dir).receipt_paths()
    if release.suffix in (".yaml", ".yml"):  # sources' manifests and sizes are read; nothing is written
        with collecting(BuildOptions(release), Path.cwd()) as collected:
            return _plan(collected.profile.name, collected.profile.version, receipts, collected.size)
    manifest, _ = load_manifest(release)
    return _plan(manifest.name, manifest.version, receipts, lambda parent: delta_bytes(manifest, parent))


def _plan(name: str, version: str, receipts: dict[str, Path], size: Callable[[Parent], int]) -> ReleasePlan:
    current, groups = group_sites(name, version, receipts)
    need: dict[str, SiteNeed] = {site: SiteNeed(site, Needs.NOTHING) for site in current}
    for group in groups:
        bytes_ = size(group.parent)
        for site in group.sites:
            need[site] = SiteNeed(site, Needs.DELTA if group.parent.files else Needs.FULL, group.parent.label, bytes_)
    return ReleasePlan(name, version, [need[site] for site in receipts])


@dataclass(frozen=True)
class FleetBuild:
    """One bundle of a fleet build and the sites it is for."""
    sites: list[str]  # the sites this bundle brings to the new release (they hold the same base)
    result: BuildResult

    @property
    def tags(self) -> list[str]:
        """Its tags on a hub: VERSION-for-SITE for each of its sites (what `fleet rollout start` looks for)."""
        return [f"{self.result.version}-for-{site}" for site in self.sites]


@dataclass(frozen=True)
class FleetBuildResult:
    built: list[FleetBuild]
    current: list[str]  # the sites that run the release already: nothing built for them
    hub: Hub | None  # where each was published, if anywhere


def fleet_build(options: BuildOptions, fleet_dir: Path, directory: Path, hub_url: str | None = None,
                hub_credentials: Path | None = None) -> FleetBuildResult:
    """`build --for-fleet`: one bundle per distinct base of the fleet's sites, published to the hub
    (tagged for each of its sites) when one is given."""
    if options.since is not None:
        raise UsageError("--for-fleet makes one delta per site base itself; it takes no --since")
    held = Fleet(fleet_dir).receipt_paths()
    if not held:
        raise UsageError(f"the fleet {fleet_dir} holds no receipts", hint="bundler fleet add RECEIPT...")
    hub = Hub.parse(hub_url) if hub_url is not None else None  # a wrong hub name fails before the build
    built = build_for_fleet(options, held, directory)
    if hub is not None:
        client = hub.client(hub_credentials)
        for item in built:
            publish(item.result.path, hub, client, tags=item.tags)
    return FleetBuildResult(built, sorted(set(held) - {site for item in built for site in item.sites}), hub)


def build_for_fleet(options: BuildOptions, receipts: dict[str, Path], directory: Path) -> list[FleetBuild]:
    """The smallest set of bundles that brings every site to the profile's release: one delta per
    distinct base (sites whose receipts hold the same files and Git tips share it), collected once.
    A site whose receipt shows this release already gets nothing."""
    keys = [load_signing_key(path) for path in options.keys]
    with collecting(options, directory) as collected:
        name, version = collected.profile.name, collected.profile.version
        _, groups = group_sites(name, version, dict(sorted(receipts.items())))
        return [FleetBuild(group.sites, collected.write(
                    directory / f"{name}-{version}-for-{group.sites[0]}{layout.SUFFIX}", keys, group.parent,
                    options.split))
                for group in groups]
