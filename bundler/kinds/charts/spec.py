"""`spec.charts` in a profile: a chart from a classic repository (repo, name, version or range) or
from an OCI registry (ref: oci://...), optionally with its dependencies and declared images."""

from __future__ import annotations

from dataclasses import dataclass

from bundler.names import CHART_NAME_RE
from bundler.oci.reference import ImageReference, ReferenceError
from bundler.profile import URL_RE, Checker
from bundler.versions import VersionRange


@dataclass(frozen=True)
class ChartSpec:
    """A Helm chart: from a classic repository (`repo`, `name`, `version` exact or a range) or an OCI
    registry (`ref`, oci://host/path/name:version)."""

    repo: str | None = None
    name: str | None = None
    version: VersionRange | None = None
    ref: ImageReference | None = None
    dependencies: bool = False  # also collect the dependencies it does not vendor
    images: bool = False  # `images: auto`: also collect the images it declares

    @property
    def text(self) -> str:
        return f"oci://{self.ref}" if self.ref else f"{self.repo} {self.name} {self.version}"


def parse_chart(check: Checker, item: object, line: int, where: str) -> ChartSpec | None:
    m = check.mapping(item, line, where, {"repo", "name", "version", "ref", "dependencies", "images"}, set())
    if m is None:
        return None
    if "dependencies" in m and not isinstance(m["dependencies"], bool):
        check.fail(m.lines["dependencies"], f"{where}.dependencies must be true or false")
    if "images" in m and m["images"] != "auto":
        check.fail(m.lines["images"], f"{where}.images must be 'auto' (collect the images the chart declares)")
    dependencies, images = m.get("dependencies") is True, m.get("images") == "auto"
    if ("repo" in m) == ("ref" in m):
        check.fail(m.line, f"{where} needs either repo (with name and version) or ref (oci://...), not both")
        return None
    if "ref" in m:
        for key in ("name", "version"):
            if key in m:
                check.fail(m.lines[key], f"{where}.{key} goes with repo; an OCI chart's ref names it "
                                         "(oci://host/path/name:version)")
        text = check.string(m, "ref", where)
        if text is None:
            return None
        if not text.startswith("oci://"):
            check.fail(m.lines["ref"], f"{where}.ref {text!r} must start with oci://")
            return None
        try:
            ref = ImageReference.parse(text.removeprefix("oci://"))
        except ReferenceError as exc:
            check.fail(m.lines["ref"], f"{where}.ref: {exc}")
            return None
        if ref.tag == "latest" and ":latest" not in text:
            check.fail(m.lines["ref"], f"{where}.ref {text!r} needs the chart version as its tag (…/name:1.2.3)")
            return None
        return ChartSpec(ref=ref, dependencies=dependencies, images=images)
    repo = check.string(m, "repo", where, URL_RE, "an http(s) URL of a chart repository")
    for key in ("name", "version"):
        if key not in m:
            check.fail(m.line, f"{where} is missing required key {key!r}")
    name = check.string(m, "name", where, CHART_NAME_RE, "a chart name")
    version_text = m.get("version")
    if isinstance(version_text, int | float):
        version_text = str(version_text)
    version = None
    if "version" in m:
        try:
            version = VersionRange(str(version_text or ""))
        except ValueError as exc:
            check.fail(m.lines["version"],
                       f"{where}.version: {exc} (an exact version or a range like '>=18.0.0 <19.0.0')")
    if repo is None or name is None or version is None:
        return None
    return ChartSpec(repo=repo.rstrip("/"), name=name, version=version, dependencies=dependencies, images=images)
