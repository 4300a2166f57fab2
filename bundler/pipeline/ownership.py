"""Every name a bundle can move on a site belongs to the bundle name that first set it: tags (an
image's own and those derived from it: `sha256-<hex>.sig`, ...), downloads by file name
(`files/<name>`), Git repositories. Another bundle name moving one is refused (`name-owned`, with the
subject this module takes). A deliberate hand-over is `bundler site hand-over DIR SUBJECT --to NAME`,
recorded in state.json (`handovers`) and shown by `site status --json`."""

from __future__ import annotations

import re

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
            previous = UpdateCache(site).hand_over(subject.removeprefix("files/"), to)
        elif match := GIT_SUBJECT.match(subject):
            previous = hand_over_repository(site, match.group(1), to)
        elif subject in state.tags:
            tag, previous = subject, state.tags[subject]["name"]
        else:
            raise UsageError(f"nothing on this site is named {subject!r}",
                             hint="give the subject as the refusal names it: files/<name>, git/<name>.git or "
                                  "<repository>:<tag>")
        state.record_handover(subject, previous, to, tag)
    return previous
