"""`spec.artifacts` in a profile: an OCI artifact copied from a registry (`ref`), or local files
packed as one the way `oras push` does (`path`, with `repository`, `tag` and `artifactType`), or
packed as an image the cluster mounts (`path` with `as: image`, `directory`, `platforms`)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from bundler.errors import UsageError
from bundler.kinds.artifacts.entry import MEDIA_TYPE_RE
from bundler.oci.reference import ImageReference, ReferenceError
from bundler.profile import Checker, parse_duration

TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
LAYER_TYPE = "application/vnd.oci.image.layer.v1.tar"  # what `oras push` gives a file without a type
FORMS = ("artifact", "image")  # `as:` files as layers (oras), or under a directory in tar layers
DIRECTORY_RE = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
PLATFORM_RE = re.compile(r"^linux/(amd64|arm64|arm/v7|arm/v6|ppc64le|s390x|riscv64)$")


@dataclass(frozen=True)
class ArtifactSpec:
    """One `spec.artifacts` item: copied from `ref`, or packed from `path` (as `oras push` does, or `as:
    image`)."""
    ref: ImageReference  # where it comes from, or (packed) where it goes: repository:tag
    path: str | None = None  # local file or directory to pack
    artifact_type: str = ""
    layer_type: str = LAYER_TYPE
    form: str = "artifact"
    directory: str = "/models"  # an image's: where its files are
    platforms: tuple[str, ...] = ("linux/amd64",)  # an image's: more than one makes an index
    max_age: dt.timedelta | None = None  # a copied vulnerability database: refused at build when older

    @property
    def text(self) -> str:
        return f"{self.path} as {self.ref}" if self.path else str(self.ref)


def parse_artifact(check: Checker, item: object, line: int, where: str) -> ArtifactSpec | None:
    m = check.mapping(item, line, where, {"ref", "path", "repository", "tag", "artifactType", "mediaType", "as",
                                          "directory", "platforms", "maxAge"}, set())
    if m is None:
        return None
    if ("ref" in m) == ("path" in m):
        check.fail(m.line, f"{where} needs either ref (an artifact in a registry) or path (local files to pack)")
        return None
    artifact_type = check.string(m, "artifactType", where, MEDIA_TYPE_RE,
                                 "a media type (e.g. application/vnd.acme.model)")
    layer_type = check.string(m, "mediaType", where, MEDIA_TYPE_RE, "a media type")
    form = check.string(m, "as", where, re.compile(f"^({'|'.join(FORMS)})$"), " or ".join(FORMS)) or "artifact"
    directory = check.string(m, "directory", where, DIRECTORY_RE, "an absolute directory such as /models")
    platforms = check.strings(m, "platforms", where, PLATFORM_RE, "a Linux platform such as linux/amd64")
    if len(set(platforms)) != len(platforms):
        check.fail(m.lines["platforms"], f"{where}.platforms names a platform twice")
    if form == "image":
        for key in ("artifactType", "mediaType"):
            if key in m:
                check.fail(m.lines[key], f"{where}.{key} goes with as: artifact; an image has layers of tar")
    else:
        for key in ("directory", "platforms"):
            if key in m:
                check.fail(m.lines[key], f"{where}.{key} goes with as: image")
    if directory is not None and any(part in (".", "..") for part in directory.split("/")):
        check.fail(m.lines["directory"], f"{where}.directory {directory!r} must not hold . or ..")
    if "ref" in m:
        for key in ("repository", "tag", "artifactType", "mediaType", "as"):
            if key in m:
                check.fail(m.lines[key], f"{where}.{key} goes with path; a copied artifact keeps its own")
        text = check.string(m, "ref", where)
        max_age = None
        if (age := check.string(m, "maxAge", where)) is not None:
            try:
                max_age = parse_duration(age)
            except UsageError as exc:
                check.fail(m.lines["maxAge"], f"{where}.maxAge: {exc.message}")
        if text is None:
            return None
        try:
            return ArtifactSpec(ImageReference.parse(text), max_age=max_age)
        except ReferenceError as exc:
            check.fail(m.lines["ref"], f"{where}.ref: {exc}")
            return None
    path = check.string(m, "path", where)
    if "maxAge" in m:
        check.fail(m.lines["maxAge"], f"{where}.maxAge goes with ref: a vulnerability database copied from a "
                                      "registry (Trivy's trivy-db)")
    for key in ("repository", "tag") + (("artifactType",) if form == "artifact" else ()):
        if key not in m:
            check.fail(m.line, f"{where} is missing required key {key!r} (a packed artifact needs it)")
    repository = check.string(m, "repository", where)
    tag = check.string(m, "tag", where, TAG_RE, "a tag (letters, digits, _ . -)")
    if path is None or repository is None or tag is None or (artifact_type is None and form == "artifact"):
        return None
    try:
        ref = ImageReference.parse(f"{repository}:{tag}")
    except ReferenceError as exc:
        check.fail(m.lines["repository"], f"{where}.repository: {exc}")
        return None
    if ref.digest or ":" in repository.rsplit("/", 1)[-1]:
        check.fail(m.lines["repository"], f"{where}.repository {repository!r} must not carry a tag or digest")
        return None
    if form == "image":
        return ArtifactSpec(ref, path, "", LAYER_TYPE, form, directory or "/models", platforms or ("linux/amd64",))
    return ArtifactSpec(ref, path, artifact_type or "", layer_type or LAYER_TYPE)


def check_artifacts(check: Checker, specs: Sequence[tuple[ArtifactSpec, int]]) -> None:
    seen: dict[str, int] = {}
    for spec, line in specs:
        name = str(spec.ref)
        if name in seen:
            check.fail(line, f"artifact {name} is listed twice (first on line {seen[name]})")
        seen.setdefault(name, line)
