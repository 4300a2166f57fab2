"""Every name a bundle can move on a site belongs to the bundle name that first set it: tags (an
image's own and those derived from it: `sha256-<hex>.sig`, ...), downloads by file name
(`files/<name>`), Git repositories. Another bundle name moving one is refused (`name-owned`, with the
subject this module takes). A bundle that ships another name's tag unchanged (a base image two
products share, at one digest) imports, and the tag stays its first owner's: only a deliberate
hand-over, `bundler site hand-over DIR SUBJECT --to NAME`, gives it away (with the tags derived from
its image: signatures, attestations, SBOMs), recorded in state.json (`handovers`) and shown by
`site status --json`. A subject is one of the site's own names, validated like any other."""

from __future__ import annotations

from bundler import names
from bundler.errors import UsageError
from bundler.kinds import KINDS
from bundler.kinds.base import HAND_OVER_HINT
from bundler.site.config import SiteConfig
from bundler.site.journal import files_lock
from bundler.site.state import SiteState


def hand_over(site: SiteConfig, subject: str, to: str) -> str:
    """Give `subject` (as a refusal names it: `files/<name>`, `git/<name>.git`, `<repo>:<tag>`) to
    bundle name `to`; return its previous owner. A kind's own names go through its admit role."""
    try:
        names.bundle_name(to)
    except ValueError as exc:
        raise UsageError(f"--to: {exc}") from None
    with files_lock(site.directory):
        state = SiteState.load(site.directory)
        tag = None
        previous = next((owner for kind in KINDS if (owner := kind.admit.hand_over(site, subject, to)) is not None),
                        None)
        if previous is None and subject in state.tags:
            tag, previous = subject, state.tags[subject].name
        if previous is None:
            raise UsageError(f"nothing on this site is named {subject!r}", hint=HAND_OVER_HINT)
        state.record_handover(subject, previous, to, tag)
    return previous
