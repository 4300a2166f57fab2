"""`spec.images` in a profile: an image reference (registry, or docker-daemon:NAME:TAG), optionally
with the platforms to keep of a multi-arch index."""

from __future__ import annotations

from dataclasses import dataclass

from bundler.kinds.images.attest import FIELDS, AttestationRule
from bundler.kinds.images.keyless import Identity
from bundler.names import PLATFORM_RE
from bundler.oci.reference import DaemonReference, ImageReference, ReferenceError, parse_any
from bundler.profile import Checker, Map, Seq


@dataclass(frozen=True)
class ImageSpec:
    """One image to carry. `platforms` empty means: keep a multi-arch index whole."""

    ref: ImageReference | DaemonReference
    platforms: tuple[str, ...] = ()
    extras: bool = True  # also carry its signatures, attestations, SBOMs and referrers
    vex: str | None = None  # an OpenVEX document (relative to the profile) carried as a referrer of it

    @property
    def text(self) -> str:
        return str(self.ref)


def parse_image(check: Checker, item: object, line: int, where: str) -> ImageSpec | None:
    platforms: tuple[str, ...] = ()
    extras = True
    vex = None
    if isinstance(item, Map):
        m = check.mapping(item, line, where, {"ref", "platforms", "extras", "vex"}, {"ref"})
        if m is None or "ref" not in m:
            return None
        text = check.string(m, "ref", where)
        line = m.lines.get("ref", line)
        platforms = check.strings(m, "platforms", where, PLATFORM_RE, "os/arch[/variant] (e.g. linux/arm64/v8)")
        if "extras" in m and not isinstance(m["extras"], bool):
            check.fail(m.lines["extras"], f"{where}.extras must be true or false")
        extras = m.get("extras") is not False
        vex = check.string(m, "vex", where)
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
    return ImageSpec(ref=ref, platforms=platforms, extras=extras, vex=vex)


def check_images(check: Checker, specs: list[tuple[ImageSpec, int]]) -> None:
    seen: dict[str, int] = {}
    for image, line in specs:
        if image.text in seen:
            check.fail(line, f"image {image.text} is listed twice (first on line {seen[image.text]})")
        seen.setdefault(image.text, line)


@dataclass(frozen=True)
class PolicyRule:
    """`spec.imagePolicy[]`: images matching `images` (globs) need a cosign signature by one of `keys`
    (public key files, relative to the profile) or a keyless one by one of `identities` (judged
    against the profile's `spec.trustedRoot`)."""

    images: tuple[str, ...]
    keys: tuple[str, ...] = ()
    identities: tuple[Identity, ...] = ()
    attestations: tuple[AttestationRule, ...] = ()  # in-toto attestations its images must carry, by the same signers


def parse_identities(check: Checker, value: object, line: int, where: str) -> tuple[Identity, ...]:
    """`keyless:` one `{issuer, subject}` or a list of them; the subject a regular expression."""
    items = value if isinstance(value, Seq) else Seq([value])
    lines = value.lines if isinstance(value, Seq) else [line]
    found = []
    for index, (item, item_line) in enumerate(zip(items, lines, strict=True)):
        at = f"{where}[{index}]" if isinstance(value, Seq) else where
        m = check.mapping(item, item_line, at, {"issuer", "subject"}, {"issuer", "subject"})
        if m is None:
            continue
        issuer, subject = check.string(m, "issuer", at), check.pattern(m, "subject", at)
        if issuer is not None and subject is not None:
            found.append(Identity(issuer, subject))
    return tuple(found)


def parse_attestations(check: Checker, value: object, line: int, where: str) -> tuple[AttestationRule, ...]:
    """`attestations:` a list of `{predicateType, builder, repository, ref}` (the conditions: regular
    expressions over SLSA provenance v1's fields)."""
    found = []
    for item, item_line, at in check.items(value, line, where, "{predicateType, builder, repository, ref}"):
        m = check.mapping(item, item_line, at, {"predicateType", *FIELDS}, {"predicateType"})
        if m is None or (predicate_type := check.string(m, "predicateType", at)) is None:
            continue
        conditions = tuple((name, pattern) for name in FIELDS if (pattern := check.pattern(m, name, at)) is not None)
        found.append(AttestationRule(predicate_type, conditions))
    return tuple(found)


def parse_policy(check: Checker, value: object, line: int, where: str) -> tuple[PolicyRule, ...]:
    rules = []
    for item, item_line, at in check.items(value, line, where, "{images, keys} or {images, keyless}"):
        m = check.mapping(item, item_line, at, {"images", "keys", "keyless", "attestations"}, {"images"})
        if m is None:
            continue
        images = [m["images"]] if isinstance(m.get("images"), str) else m.get("images")
        keys = m.get("keys", [])
        if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
            check.fail(m.lines.get("images", m.line), f"{at}.images must be an image name glob or a list of them")
            continue
        if not isinstance(keys, list) or not all(isinstance(k, str) and k for k in keys):
            check.fail(m.lines.get("keys", m.line), f"{at}.keys must list public key files (cosign.pub)")
            continue
        identities = parse_identities(check, m["keyless"], m.lines["keyless"], f"{at}.keyless") \
            if "keyless" in m else ()
        if not keys and not identities:
            check.fail(m.line, f"{at} needs keys (cosign public key files) or keyless ({{issuer, subject}}): who "
                               "must have signed the images")
            continue
        attestations = parse_attestations(check, m["attestations"], m.lines["attestations"], f"{at}.attestations") \
            if "attestations" in m else ()
        rules.append(PolicyRule(tuple(images), tuple(str(k) for k in keys), identities, attestations))
    return tuple(rules)
