"""The updates kind's section of site.yaml:

    updates:
      groups: [line-1, line-2]   # target groups update approvals name
      anonymous: false           # true: anyone on the network reads every group's updates
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.kinds.base import Settings, option_values
from bundler.names import GROUP_RE
from bundler.site.sections import listed

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig

KEY = "updates"


@dataclass(frozen=True)
class UpdateSettings:
    groups: tuple[str, ...] = ()  # target groups for update approvals (e.g. one per production line)
    anonymous: bool = False  # without it, a group's updates go to that group's enrolled clients only


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    for group in groups:
        if not GROUP_RE.match(group):
            raise UsageError(f"group {group!r} is not a valid name (letters, digits, . _ -)")
    return tuple(dict.fromkeys(groups))


def check_group(group: str, groups: Sequence[str]) -> None:
    """A group an approval or an enrollment names must be one this site declared."""
    if group not in groups:
        raise UsageError(f"unknown group {group!r}; this site's groups: {', '.join(groups) or 'none'}",
                         hint="groups are declared in site.yaml (updates.groups) or with site init --group")


class UpdateSiteSettings(Settings[UpdateSettings]):
    def parse(self, section: Mapping[str, object], directory: Path) -> UpdateSettings:
        if unknown := set(section) - {"groups", "anonymous"}:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        if not isinstance(section.get("anonymous", False), bool):
            raise ValueError("updates.anonymous must be true or false")
        return UpdateSettings(check_groups([str(g) for g in listed(section, "groups", "updates")]),
                              bool(section.get("anonymous", False)))

    def dump(self, value: UpdateSettings) -> Doc:
        return {"groups": list(value.groups), **({"anonymous": True} if value.anonymous else {})}

    def create(self, options: Mapping[str, object]) -> tuple[UpdateSettings, dict[str, bytes]]:
        return UpdateSettings(check_groups([str(g) for g in option_values(options, "groups")])), {}


def update_settings(site: SiteConfig) -> UpdateSettings:
    """This site's updates section."""
    return cast(UpdateSettings, site.section(KEY))
