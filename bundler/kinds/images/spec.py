"""`spec.images` in a profile: an image reference (registry, or docker-daemon:NAME:TAG), optionally
with the platforms to keep of a multi-arch index."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bundler.names import PLATFORM_RE
from bundler.oci.reference import DaemonReference, ImageReference, ReferenceError, parse_any
from bundler.profile import Checker, Map


@dataclass(frozen=True)
class ImageSpec:
    """One image to carry. `platforms` empty means: keep a multi-arch index whole."""

    ref: ImageReference | DaemonReference
    platforms: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return str(self.ref)


def parse_image(check: Checker, item: Any, line: int, where: str) -> ImageSpec | None:
    platforms: tuple[str, ...] = ()
    if isinstance(item, Map):
        m = check.mapping(item, line, where, {"ref", "platforms"}, {"ref"})
        if m is None or "ref" not in m:
            return None
        text = check.string(m, "ref", where)
        line = m.lines.get("ref", line)
        collected = []
        for platform, pline in check.sequence(m, "platforms", where):
            if not isinstance(platform, str) or not PLATFORM_RE.match(platform):
                check.fail(pline, f"{where}.platforms: {platform!r} is not os/arch[/variant] (e.g. linux/arm64/v8)")
            else:
                collected.append(platform)
        platforms = tuple(collected)
    elif isinstance(item, str):
        text = item
    else:
        check.fail(line, f"{where} must be an image reference string or a mapping with 'ref'")
        return None
    if text is None:
        return None
    try:
        ref = parse_any(text)
    except ReferenceError as exc:
        check.fail(line, f"{where}: {exc}")
        return None
    if platforms and isinstance(ref, DaemonReference):
        check.fail(line, f"{where}: platforms cannot be selected for a docker-daemon image (it has one)")
    return ImageSpec(ref=ref, platforms=platforms)


def check_images(check: Checker, specs: list[tuple[ImageSpec, int]]) -> None:
    seen: dict[str, int] = {}
    for image, line in specs:
        if image.text in seen:
            check.fail(line, f"image {image.text} is listed twice (first on line {seen[image.text]})")
        seen.setdefault(image.text, line)
