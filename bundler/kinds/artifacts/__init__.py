"""OCI artifacts: `spec.artifacts` (AI models, Flux artifacts, configuration, WASM modules: any file).
Copied from a registry unchanged, or packed from local files as `oras push` does, or packed as an
image (`as: image`: tar layers under a directory, for image volumes and KServe modelcars); pushed to
the site registry under the same naming rule as images (`<source host>/<path>`). A consumer fetches
an artifact with the distribution API or `oras pull` (a Flux OCIRepository each); a node's container
runtime pulls an image-packed one by its name, as any image.
Roles: build.py, format.py (with the check of each artifact's files), publish.py, report.py."""

from __future__ import annotations

from bundler.kinds.artifacts.entry import ArtifactEntry
from bundler.kinds.base import Kind, role_modules

KIND = Kind("artifacts", "artifacts", "artifact", ArtifactEntry, roles=role_modules(
    __name__, build="ArtifactBuild", format="ArtifactFormat", publish="ArtifactPublish", receipt="ArtifactReceipt",
    report="ArtifactReport"))
