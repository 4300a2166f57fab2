"""A Git repository's entry in bundle.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from bundler import names
from bundler.jsontypes import Doc
from bundler.untrusted import Malformed, Obj

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest

KEY = "repos"
PAYLOAD_PATTERN = r"git/[A-Za-z0-9][A-Za-z0-9._-]{0,99}\.bundle"  # where a bundle carries a repository


def git_bundle_path(name: str) -> str:
    return f"git/{name}.bundle"



@dataclass(frozen=True)
class RepoEntry:
    """One Git repository: the refs it carries (full ref name -> object id) and its git bundle."""

    name: str
    url: str
    refs: dict[str, str]
    bundle: str | None  # path of the git bundle in the bundle; None when no commit is new since the parent
    prerequisites: tuple[str, ...] = ()  # commits the site must already have (a delta's base)

    def to_dict(self) -> Doc:
        return {"name": self.name, "url": self.url, "refs": dict(sorted(self.refs.items())), "bundle": self.bundle,
                "prerequisites": list(self.prerequisites)}

    @classmethod
    def parse(cls, d: Obj) -> RepoEntry:
        name = d.string("name", names.repo_name)
        bundle = d.string("bundle", default=None)
        if bundle is not None and bundle != git_bundle_path(name):
            raise Malformed(f"{d.where}.bundle: {bundle[:120]!r} is not {git_bundle_path(name)!r}")
        return cls(name, d.string("url", names.text, default=""), d.mapping("refs", names.ref_name, names.object_id),
                   bundle, d.strings("prerequisites", names.object_id))


def repos_of(manifest: BundleManifest) -> tuple[RepoEntry, ...]:
    return cast("tuple[RepoEntry, ...]", manifest.entries(KEY))
