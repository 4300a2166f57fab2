"""Artifacts in a profile (`spec.artifacts`) and their collection: packed from files or copied."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bundler.kinds.artifacts.collect import copy_artifact, pack_artifact
from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.artifacts.spec import ArtifactSpec, check_artifacts, parse_artifact
from bundler.kinds.base import Build, CollectContext, Part
from bundler.parallel import run_parallel

if TYPE_CHECKING:
    from bundler.profile import Checker


class ArtifactBuild(Build[ArtifactSpec]):
    example = """\
  artifacts:                                      # OCI artifacts: models, configuration, any file
    - path: ./models/model.onnx                   # a file or a directory, packed as `oras push` packs it
      repository: models.example.com/store/model  # where it lives (on the site: under its host, as images)
      tag: "1.0"
      artifactType: application/vnd.example.model.v1
    # - ref: registry.example.com/models/order-accuracy:1.3   # copied unchanged
"""

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> ArtifactSpec | None:
        return parse_artifact(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[ArtifactSpec, int]], line: int) -> None:
        check_artifacts(check, list(specs))

    def collect(self, context: CollectContext, specs: Sequence[ArtifactSpec]) -> Part:
        def one(spec: ArtifactSpec) -> ArtifactEntry:
            if spec.path is not None:
                return pack_artifact(spec, context.base, context.oci)
            return copy_artifact(spec, context.client_for(spec.ref.host), context.oci, context.staging / "databases")

        return Part(tuple(run_parallel(one, list(specs), context.jobs)))
