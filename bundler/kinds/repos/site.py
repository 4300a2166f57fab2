"""The site's Git repositories: bare repositories under DIR/git, seeded from git bundles.

Import stages first: each git bundle is fetched into a hidden namespace (refs/bundler/incoming/*,
never advertised to clients: uploadpack.hideRefs), which makes git check every object. Then the
ref moves are judged: a branch moves only by fast-forward, a tag never moves, unless --force-refs
names the ref. Nothing is visible until `publish` moves all refs of a repository in one
transaction, after the whole bundle verified and the registry took its content.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bundler import git, names, yamltext
from bundler.bundle.manifest import BundleManifest
from bundler.bundle.parent import parent_label
from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import extract_member
from bundler.errors import RefusedError, UsageError
from bundler.fsutil import atomic_write
from bundler.jsontypes import Doc
from bundler.kinds.repos.entry import RepoEntry, repos_of
from bundler.site.cluster import FLUX_NAMESPACE, GIT_SECRET
from bundler.site.config import FLUX_DIR, GIT_DIR, SiteConfig

INCOMING = "refs/bundler/incoming/"
FLUX_GIT = "git-repositories.yaml"
ZERO = "0" * 40


@dataclass
class StagedRepo:
    """A repository staged by an import: the refs it will move at publication, and who owns it."""
    entry: RepoEntry
    path: Path
    owner: str  # the bundle name importing it: the repository's owner once it publishes first
    updates: list[tuple[str, str, str]] = field(default_factory=list)  # (ref, new, old or ZERO)


def repository_path(site: SiteConfig, name: str) -> Path:
    return site.directory / GIT_DIR / f"{name}.git"


def ensure_repository(site: SiteConfig, name: str) -> Path:
    path = repository_path(site, name)
    if not (path / "HEAD").exists():
        git.run(["init", "--bare", "-q", path])
        settings = {"uploadpack.hideRefs": "refs/bundler", "receive.denyNonFastForwards": "true",
                    "receive.denyDeletes": "true", "http.receivepack": "true" if site.http.push else "false",
                    "gc.auto": "0"}
        for key, value in settings.items():
            git.run(["config", key, value], cwd=path)
    return path


OWNER_KEY = "bundler.owner"  # in the repository's config: the bundle name whose refs it holds


def repository_owner(site: SiteConfig, name: str) -> str | None:
    """The bundle name that first published this repository on the site (None: a new one)."""
    path = repository_path(site, name)
    if not (path / "HEAD").exists():
        return None
    proc = git.run(["config", "--get", OWNER_KEY], cwd=path, check=False)
    return (proc.stdout.decode().strip() or None) if proc.returncode == 0 else None


def hand_over_repository(site: SiteConfig, name: str, to: str) -> str:
    """Give repository `name` to bundle name `to`; return its previous owner."""
    previous = repository_owner(site, name)
    if previous is None:
        raise UsageError(f"no Git repository {name!r} on this site has an owner yet",
                         hint="`bundler site status` lists the repositories")
    git.run(["config", OWNER_KEY, to], cwd=repository_path(site, name))
    return previous


def _current(path: Path, ref: str) -> str | None:
    proc = git.run(["rev-parse", "--verify", "-q", ref], cwd=path, check=False)
    return (proc.stdout.decode().strip() or None) if proc.returncode == 0 else None


def _has_commit(path: Path, oid: str) -> bool:
    return git.run(["cat-file", "-e", f"{oid}^{{commit}}"], cwd=path, check=False).returncode == 0


def _forced(force_refs: tuple[str, ...], repo: str, ref: str) -> bool:
    """Named in full (`refs/heads/main`: in every repository; `config:refs/tags/v1`: in that one)."""
    return ref in force_refs or f"{repo}:{ref}" in force_refs


def check_force_ref(value: str) -> str:
    """A --force-refs value: a full ref name, or REPO:REF. A short name (`main`) is refused: it
    could be a branch or a tag, and a tag must never move because a branch was meant."""
    repo, colon, ref = value.rpartition(":")
    try:
        if colon:
            names.repo_name(repo)
        names.ref_name(ref)
    except ValueError:
        raise UsageError(f"--force-refs {value!r}: name the ref in full, as the refusal does "
                         "(refs/heads/main, refs/tags/v1), optionally as REPO:REF",
                         hint="a short name could be a branch or a tag; only the ref named moves") from None
    return value


def stage(site: SiteConfig, reader: BundleReader, manifest: BundleManifest,
          force_refs: tuple[str, ...] = ()) -> list[StagedRepo]:
    """Fetch every git bundle into its repository's hidden namespace and judge the ref moves.

    Raises RefusedError (and removes what it staged) for a missing base, unreadable objects, or a
    history rewrite; the repositories' visible refs are untouched either way.
    """
    staged: list[StagedRepo] = []
    try:
        for entry in repos_of(manifest):
            path = ensure_repository(site, entry.name)
            item = StagedRepo(entry, path, manifest.name)
            staged.append(item)
            if (problem := missing_base(site, manifest, entry)) is not None:
                raise RefusedError(problem, hint="import the bundle this delta was built against, then this one")
            if entry.bundle is not None:
                with tempfile.TemporaryDirectory(prefix="bundler-git-") as scratch:
                    bundle_file = extract_member(reader, entry.bundle, Path(scratch) / "repo.bundle",
                                                 manifest.files[entry.bundle].sha256)  # the one read of it
                    try:
                        git.run(["fetch", "-q", "--no-tags", bundle_file, f"+refs/*:{INCOMING}*"], cwd=path)
                    except git.GitError as exc:
                        raise RefusedError(f"{entry.bundle}: git cannot read it: {exc.message}",
                                           hint="the git bundle is corrupt; get a fresh copy of the bundle") from None
            rewrites = []
            for ref, new in sorted(entry.refs.items()):
                if git.run(["cat-file", "-e", new], cwd=path, check=False).returncode != 0:
                    raise RefusedError(f"repository {entry.name}: {ref} points to {new[:12]}, which neither the "
                                       "bundle nor the site has")
                old = _current(path, ref)
                if old == new:
                    continue
                if old is not None and not _forced(force_refs, entry.name, ref):
                    moves_forward = ref.startswith("refs/heads/") and git.run(
                        ["merge-base", "--is-ancestor", old, new], cwd=path, check=False).returncode == 0
                    if not moves_forward:
                        rewrites.append(f"{ref} ({old[:12]} -> {new[:12]})")
                        continue
                item.updates.append((ref, new, old or ZERO))
            if rewrites:
                kind = "would move a tag or rewrite history"
                forced = " ".join(f"--force-refs {entry.name}:{ref.split(' ')[0]}" for ref in rewrites)
                raise RefusedError(f"repository {entry.name}: this bundle {kind}: {', '.join(rewrites)}",
                                   hint=f"the Git history was rewritten: ask release engineering; only with a "
                                        f"reason: {forced}")
    except BaseException:
        discard(staged)
        remove_empty(staged)
        raise
    return staged


def missing_base(site: SiteConfig, manifest: BundleManifest, entry: RepoEntry) -> str | None:
    """Why the site cannot take this repository's delta (it lacks the commits it builds on), or None."""
    path = repository_path(site, entry.name)
    missing = [oid for oid in entry.prerequisites if not (path / "HEAD").exists() or not _has_commit(path, oid)]
    if not missing:
        return None
    source = f" (import {parent_label(manifest.parent)} first)" if manifest.parent else ""
    return (f"repository {entry.name}: this bundle builds on commits the site does not have: "
            f"{', '.join(m[:12] for m in missing)}{source}")


def discard(staged: list[StagedRepo]) -> None:
    """Drop the hidden incoming refs (their objects become unreachable and are collected later)."""
    for item in staged:
        refs = git.out(["for-each-ref", "--format=%(refname)", INCOMING], cwd=item.path).splitlines()
        if refs:
            git.run(["update-ref", "--stdin"], cwd=item.path,
                    input="".join(f"delete {ref}\n" for ref in refs).encode())


def publish(site: SiteConfig, staged: list[StagedRepo]) -> None:
    """Move every repository's refs in one transaction each, then write the Flux manifests."""
    for item in staged:
        if item.updates and repository_owner(site, item.entry.name) is None:
            git.run(["config", OWNER_KEY, item.owner], cwd=item.path)
        if item.updates:
            lines = ["start"] + [f"update {ref} {new} {old}" for ref, new, old in item.updates] + ["commit"]
            git.run(["update-ref", "--stdin"], cwd=item.path, input=("\n".join(lines) + "\n").encode())
            heads = [ref for ref, _, _ in item.updates if ref.startswith("refs/heads/")]
            if heads and _current(item.path, "HEAD") is None:  # a new repository: HEAD names a real branch
                main = next((h for h in heads if h in ("refs/heads/main", "refs/heads/master")), heads[0])
                git.run(["symbolic-ref", "HEAD", main], cwd=item.path)
    discard(staged)
    if staged:
        write_flux_git_repositories(site)


def repositories(site: SiteConfig) -> list[str]:
    root = site.directory / GIT_DIR
    return sorted(p.name.removesuffix(".git") for p in root.glob("*.git")) if root.exists() else []


def write_flux_git_repositories(site: SiteConfig) -> Path:
    docs: list[Doc] = []
    for name in repositories(site):
        head = git.run(["symbolic-ref", "-q", "HEAD"], cwd=repository_path(site, name), check=False)
        branch = head.stdout.decode().strip().removeprefix("refs/heads/") or "main"
        docs.append({"apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                     "metadata": {"name": name, "namespace": FLUX_NAMESPACE},
                     "spec": {"url": site.git_url(name), "interval": "5m", "ref": {"branch": branch},
                              "secretRef": {"name": GIT_SECRET}}})
    path = site.directory / FLUX_DIR / FLUX_GIT
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (f"# Flux sources for the site's Git repositories. The secret {GIT_SECRET} holds username and\n"
              f"# password from {site.credentials_file.name} and ca.crt: the site CA ({site.ca_file.name}).\n")
    atomic_write(path, (header + yamltext.dump_all(docs)).encode())
    return path


def remove_empty(staged: list[StagedRepo]) -> None:
    """A repository created by a refused import, with no refs, goes away again."""
    for item in staged:
        if not git.out(["for-each-ref", "--format=%(refname)"], cwd=item.path):
            shutil.rmtree(item.path, ignore_errors=True)


def refs_present(site: SiteConfig, manifest: BundleManifest) -> bool:
    """Every repository of the bundle is on the site with exactly the bundle's refs."""
    for entry in repos_of(manifest):
        path = repository_path(site, entry.name)
        if not path.exists() or any(_current(path, ref) != oid for ref, oid in entry.refs.items()):
            return False
    return True


def pending_moves(site: SiteConfig, entry: RepoEntry) -> list[str]:
    """The ref changes importing this repository would make: "ref old -> new" (or "new ref -> id")."""
    path = repository_path(site, entry.name)
    moves = []
    for ref, new in sorted(entry.refs.items()):
        old = _current(path, ref) if (path / "HEAD").exists() else None
        if old != new:
            moves.append(f"{ref} {old[:12] if old else '(new)'} -> {new[:12]}")
    return moves


def current_refs(site: SiteConfig, name: str) -> dict[str, str]:
    path = repository_path(site, name)
    lines = git.out(["for-each-ref", "--format=%(refname) %(objectname)"], cwd=path).splitlines()
    return dict(line.split(" ", 1) for line in lines if not line.startswith(INCOMING))
