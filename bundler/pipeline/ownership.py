"""Every name a bundle can move on a site belongs to the bundle name that first set it: tags (an
image's own and those derived from it: `sha256-<hex>.sig`, ...), downloads by file name
(`files/<name>`), Git repositories. Another bundle name moving one is refused (`name-owned`, with the
subject this module takes). A bundle that ships another name's tag unchanged (a base image two
products share, at one digest) imports, and the tag stays its first owner's: only a deliberate
hand-over, `bundler site hand-over DIR SUBJECT --to NAME`, gives it away (with the tags derived from
its image: signatures, attestations, SBOMs), recorded in state.json (`handovers`) and shown by
`site status --json`. A subject is one of the site's own names, validated like any other."""

from __future__ import annotations

import re
from collections.abc import Callable

from bundler import names
from bundler.errors import UsageError
from bundler.kinds.repos.site import hand_over_repository
from bundler.kinds.updates.cache import UpdateCache
from bundler.site.config import SiteConfig, SiteState
from bundler.site.journal import files_lock

GIT_SUBJECT = re.compile(r"^git/(.+)\.git$")


def hand_over(site: SiteConfig, subject: str, to: str) -> str:
    """Give `subject` (as a refusal names it: `files/<name>`, `git/<name>.git`, `<repo>:<tag>`) to
    bundle name `to`; return its previous owner."""
    try:
        names.bundle_name(to)
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    with files_lock(site.directory):
        state = SiteState.load(site.directory)
        tag = None
        if subject.startswith("files/"):
            previous = UpdateCache(site).hand_over(_valid(names.file_name, subject.removeprefix("files/")), to)
        elif match := GIT_SUBJECT.match(subject):
            previous = hand_over_repository(site, _valid(names.repo_name, match.group(1)), to)
        elif subject in state.tags:
            tag, previous = subject, state.tags[subject]["name"]
        else:
            raise UsageError(f"nothing on this site is named {subject!r}",
                             hint="give the subject as the refusal names it: files/<name>, git/<name>.git or "
                                  "<repository>:<tag>")
        state.record_handover(subject, previous, to, tag)
    return previous


def _valid(rule: Callable[[str], str], name: str) -> str:
    try:
        return rule(name)
    except ValueError as exc:
        raise UsageError(f"not a name on this site: {exc}",
                         hint="give the subject as the refusal names it: files/<name>, git/<name>.git or "
                              "<repository>:<tag>") from None
