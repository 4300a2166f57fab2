"""Updates in a profile (`spec.updates`) and their collection: each file fetched (or read) once,
checked against its digest, staged for the bundle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.base import Build, CollectContext, Part
from bundler.kinds.updates.collect import collect_update
from bundler.kinds.updates.spec import UpdateSpec, check_updates, parse_update
from bundler.oci.content import BlobSource
from bundler.parallel import run_parallel

if TYPE_CHECKING:
    from bundler.profile import Checker


class UpdateBuild(Build[UpdateSpec]):
    example = """\
  updates:                                        # OS and VM updates: the site's update cache (apt, dnf, Windows)
    - path: ./files/edge-agent_1.0.0_all.deb      # a local file, relative to this profile
      approve: [line-1]                           # pre-approved for these site groups
    # - url: https://updates.example.com/pool/tool_2.1.0_amd64.deb
    #   sha256: <64 hex>                          # required with a URL: checked before anything is kept
"""

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> UpdateSpec | None:
        return parse_update(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[UpdateSpec, int]], line: int) -> None:
        check_updates(check, specs, line)

    def collect(self, context: CollectContext, specs: Sequence[UpdateSpec]) -> Part:
        updates = run_parallel(lambda spec: collect_update(spec, context.staging, context.base, context.session),
                               list(specs), context.jobs)
        payloads: dict[str, BlobSource] = {}
        for update in updates:
            e = update.entry
            payloads.setdefault(e.path, BlobSource(f"sha256:{e.sha256}", e.size, e.file, path=update.staged))
        return Part(tuple(u.entry for u in updates), payloads)
