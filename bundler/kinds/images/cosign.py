"""Keyed cosign signatures, verified offline (no Rekor, no network): the `sha256-<hex>.sig` manifest's
layers are simple-signing payloads (`application/vnd.dev.cosign.simplesigning.v1+json`), each signed
with ECDSA P-256/SHA-256, the base64 DER signature in the layer annotation
`dev.cosignproject.cosign/signature`. A signature counts for an image when its payload's
`critical.image.docker-manifest-digest` is the image's digest and a policy key verifies it."""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bundler.jsontypes import Doc
from bundler.keyfiles import load_trusted_key
from bundler.kinds.images.attest import AttestationRule, keyed_statements
from bundler.kinds.images.keyless import Identity, KeylessRefused, OtherStatement, Root, judge, sigstore_bundles
from bundler.kinds.images.tagscheme import (
    CERTIFICATE,
    SIGNATURE,
    SIMPLE_SIGNING,
    judge_tag_scheme,
    judge_tag_scheme_attestations,
)
from bundler.oci import media
from bundler.oci.reference import ImageReference
from bundler.signing import TrustedKey, ecdsa_valid

if TYPE_CHECKING:
    from bundler.kinds.images.entry import ImageEntry
    from bundler.kinds.images.spec import PolicyRule
    from bundler.oci.content import OciContent

MAX_PAYLOAD = 1 << 20


@dataclass(frozen=True)
class ImageRule:
    """Images whose name matches one of `images` (globs over host/path, e.g. registry.example.com/team/*)
    need a valid cosign signature by one of `keys`, or a keyless one by one of `identities`."""

    images: tuple[str, ...]
    keys: tuple[TrustedKey, ...] = ()
    identities: tuple[Identity, ...] = ()
    attestations: tuple[AttestationRule, ...] = ()  # attestations its images must carry, signed by the same

    @property
    def signers(self) -> str:
        """Who the rule takes, for people."""
        return " or ".join([*(k.name for k in self.keys), *(str(i) for i in self.identities)])

    def covers(self, ref: str) -> bool:
        parsed = ImageReference.parse(ref)
        name = f"{parsed.host}/{parsed.repository}"
        return any(fnmatch.fnmatchcase(name, glob) or fnmatch.fnmatchcase(ref, glob) for glob in self.images)


def signers(read: Callable[[str], bytes], signature_manifest: str, subject: str,
            keys: Sequence[TrustedKey]) -> set[str]:
    """Names of the keys with a valid signature of `subject` in the `.sig` manifest `read` gives
    (read(digest) -> bytes, the digest checked by the caller). Malformed parts count as unsigned."""
    found: set[str] = set()
    try:
        layers = media.image_blobs(read(signature_manifest))[1:]
    except (media.ManifestError, ValueError):
        return found
    for layer in layers:
        annotations = (layer.raw or {}).get("annotations")
        encoded = annotations.get(SIGNATURE) if isinstance(annotations, dict) else None
        if layer.media_type != SIMPLE_SIGNING or not isinstance(encoded, str) or layer.size > MAX_PAYLOAD:
            continue
        try:
            signature = base64.b64decode(encoded, validate=True)
            payload = read(layer.digest)
            claimed = json.loads(payload)["critical"]["image"]["docker-manifest-digest"]
        except (binascii.Error, ValueError, KeyError, TypeError):
            continue
        if claimed != subject:
            continue
        found |= {key.name for key in keys if ecdsa_valid(key.key, signature, payload)}
    return found


def load_rules(rules: Sequence[PolicyRule], base: Path) -> list[ImageRule]:
    """The profile's spec.imagePolicy with its key files read (relative to the profile)."""
    return [ImageRule(rule.images, tuple(load_trusted_key(base / key) for key in rule.keys), rule.identities,
                      rule.attestations) for rule in rules]


@dataclass(frozen=True)
class Verdict:
    """What an image policy rule found of one image it covers: who signed it (a key's name, or a
    keyless identity and the root it was judged against), the attestations that held, and why it is
    refused (empty: it is taken)."""
    image: str
    digest: str
    rule: tuple[str, ...]  # the rule's image globs
    signer: str | None
    root: str | None  # the trusted root's digest, for a keyless signer
    attested: tuple[str, ...]  # the attestations the rule asked for that held
    refusals: tuple[str, ...]

    def to_dict(self) -> Doc:
        return {"image": self.image, "digest": self.digest, "rule": self.rule, "signer": self.signer,
                "root": self.root, "attestations": self.attested}


def judge_images(entries: Sequence[ImageEntry], rules: Sequence[ImageRule], read: Callable[[str], bytes],
                 root: Root | None = None) -> list[Verdict]:
    """Each image a rule covers, judged: a valid signature by one of the rule's signers (keyless ones
    against `root`), and each attestation the rule asks for, signed by them and meeting its conditions."""
    return [_judge(entry, rule, read, root) for entry in entries for rule in rules if rule.covers(entry.ref)]


def unsigned_images(entries: Sequence[ImageEntry], rules: Sequence[ImageRule], read: Callable[[str], bytes],
                    root: Root | None = None) -> list[str]:
    """Why each image a rule covers is refused (`judge_images`), for people."""
    return [f"{v.image} matches {', '.join(v.rule)} and {why}"
            for v in judge_images(entries, rules, read, root) for why in v.refusals]


def _judge(entry: ImageEntry, rule: ImageRule, read: Callable[[str], bytes], root: Root | None) -> Verdict:
    out = []
    keyed = set()
    for extra in entry.extras:
        if extra.kind == "sig" and extra.subject == entry.digest:
            keyed |= signers(read, extra.digest, entry.digest, rule.keys)
    signer = f"key {sorted(keyed)[0]}" if keyed else None
    keyless = Keyless(root, _bundles(entry, read)) if rule.identities and root is not None else None
    why: list[str] = []
    if keyless is not None and signer is None:
        for bundle in keyless.bundles:
            try:
                judged = judge(bundle, entry.digest, rule.identities, keyless.root)
                signer = f"{judged.issuer} {judged.subject}"
                break
            except OtherStatement:
                continue  # an attestation, judged below when the rule asks for one
            except KeylessRefused as exc:
                why.append(str(exc))
    if keyless is not None and signer is None:  # cosign v2's keyless signatures, in the tag scheme
        for extra in entry.extras:
            if extra.kind == "sig" and extra.subject == entry.digest and _tag_scheme_keyless(read, extra.digest):
                try:
                    judged = judge_tag_scheme(read, extra.digest, entry.digest, rule.identities, keyless.root)
                    signer = f"{judged.issuer} {judged.subject}"
                except KeylessRefused as exc:
                    why.append(str(exc))
    if signer is None:
        has = ("a signature by other keys" if any(e.kind == "sig" for e in entry.extras) else "no signature") \
            if not why else f"a keyless signature that does not hold ({'; '.join(why)})"
        out.append(f"has {has} (needs one by {rule.signers})")
    attested = []
    for wanted in rule.attestations:
        reason = _attested(entry, rule, wanted, read, keyless)
        if reason is not None:
            out.append(f"has {reason} (needs an attestation of {wanted}, by {rule.signers})")
        else:
            attested.append(str(wanted))
    return Verdict(entry.ref, entry.digest, rule.images, signer,
                   keyless.root.digest if keyless is not None and not keyed else None, tuple(attested), tuple(out))


def _tag_scheme_keyless(read: Callable[[str], bytes], signature_manifest: str) -> bool:
    """Whether a `.sig` manifest holds a keyless signature (a Fulcio certificate in its annotations)."""
    try:
        layers = media.image_blobs(read(signature_manifest))[1:]
    except (media.ManifestError, ValueError):
        return False
    notes = [(layer.raw or {}).get("annotations") for layer in layers]
    return any(isinstance(n, dict) and CERTIFICATE in n for n in notes)


@dataclass(frozen=True)
class Keyless:
    """What keyless judging works with for one image: the pinned root, the image's Sigstore bundles."""
    root: Root
    bundles: list[bytes]


def _bundles(entry: ImageEntry, read: Callable[[str], bytes]) -> list[bytes]:
    referrers = [e.digest for e in entry.extras if e.kind == "referrers" and e.subject == entry.digest]
    return sigstore_bundles(read, referrers)


def _attested(entry: ImageEntry, rule: ImageRule, wanted: AttestationRule, read: Callable[[str], bytes],
              keyless: Keyless | None) -> str | None:
    """Why no attestation `entry` carries meets `wanted` (None: one does)."""
    why = []
    found: list[dict[str, object]] = [
        predicate for extra in entry.extras if extra.kind == "att" and extra.subject == entry.digest
        for kind, predicate in keyed_statements(read, extra.digest, entry.digest, rule.keys)
        if kind == wanted.predicate_type]
    if keyless is not None:
        for extra in entry.extras:  # cosign v2's keyless attestations, in the tag scheme
            if extra.kind == "att" and extra.subject == entry.digest:
                held, failed = judge_tag_scheme_attestations(read, extra.digest, entry.digest, rule.identities,
                                                             keyless.root, wanted.predicate_type)
                found += [j.predicate for j in held if j.predicate_type == wanted.predicate_type]
                why += [f"one that does not hold ({reason})" for reason in failed]
        for bundle in keyless.bundles:  # cosign v3's, Sigstore bundles among the referrers
            try:
                judged = judge(bundle, entry.digest, rule.identities, keyless.root, wanted.predicate_type)
                found.append(judged.predicate)
            except OtherStatement:
                continue  # a signature, another attestation
            except KeylessRefused as exc:
                why.append(f"one that does not hold ({exc})")
    for predicate in found:
        mismatch = wanted.mismatch(predicate)
        if mismatch is None:
            return None
        why.append(f"one whose {mismatch.removeprefix('its ')}")
    return "; ".join(why) if why else f"no attestation of {wanted.predicate_type}"


def read_blob(oci: OciContent, digest: str, limit: int) -> bytes:
    """A small blob of the collection: kept in memory, or fetched now (its digest checked as it passes)."""
    if digest in oci.small_blobs:
        return oci.small_blobs[digest]
    source = oci.blobs.get(digest)
    if source is None or source.size > limit or source.fetch is None:
        raise ValueError(f"blob {digest} is not a small fetchable blob")
    buffer = bytearray(source.size)

    def write(offset: int, chunk: bytes) -> None:
        buffer[offset : offset + len(chunk)] = chunk

    source.fetch(write, lambda n: None)
    oci.add_small_blob(digest, bytes(buffer))
    return bytes(buffer)
