"""The images kind's section of site.yaml: the site's own image policy: the image names it covers,
and who must have signed them: cosign keys (copied under trust/ at `site init`), or keyless
identities judged against the Sigstore trusted root the site pins (copied under trust/ too):

    images:
      scopes: ["ghcr.io/acme/*"]
      keys:
        - {name: image-cosign, file: trust/image-cosign.pub}
      identities:                    # keyless: the OIDC issuer, and a regular expression for the subject
        - {issuer: "https://token.actions.githubusercontent.com", subject: "https://github.com/acme/.*"}
      trustedRoot: trust/sigstore-trusted-root.json
      attestations:                  # what its images must also carry, signed by the same (SLSA provenance v1)
        - {predicateType: "https://slsa.dev/provenance/v1", builder: "https://github.com/actions/runner/.*"}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.keyfiles import key_name, load_trusted_key, read_operator_file
from bundler.kinds.base import Settings, option_values
from bundler.kinds.images.attest import FIELDS, SLSA_PROVENANCE, AttestationRule
from bundler.kinds.images.cosign import ImageRule
from bundler.kinds.images.keyless import Identity, KeylessRefused, Root
from bundler.signing import public_pem
from bundler.site.config import TRUST_DIR
from bundler.site.sections import listed, text

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig

KEY = "images"


@dataclass(frozen=True)
class ImageSettings:
    keys: tuple[tuple[str, str], ...] = ()  # cosign keys (name, file in the site) the scopes' images need
    scopes: tuple[str, ...] = ()  # image name globs (host/path) the keys (or identities) cover
    identities: tuple[Identity, ...] = ()  # keyless signers the scopes' images may be signed by instead
    trusted_root: str = ""  # the Sigstore trusted root (a file in the site) keyless signatures are judged against
    attestations: tuple[AttestationRule, ...] = ()  # attestations the scopes' images must carry, by the same

    @property
    def policed(self) -> bool:
        return bool(self.keys or self.identities)


class ImageSiteSettings(Settings[ImageSettings]):
    def parse(self, section: Mapping[str, object], directory: Path) -> ImageSettings:
        if unknown := set(section) - {"scopes", "keys", "identities", "trustedRoot", "attestations"}:
            raise ValueError(f"unknown keys in images: {', '.join(sorted(unknown))}")
        keys = tuple((text(k, "name", "images.keys[]"), text(k, "file", "images.keys[]"))
                     for k in listed(section, "keys", "images"))
        identities = tuple(identity(text(i, "issuer", "images.identities[]"), text(i, "subject", "images.identities[]"))
                           for i in listed(section, "identities", "images"))
        root = section.get("trustedRoot") or ""
        if identities and not root:
            raise ValueError("images.identities need images.trustedRoot: the Sigstore trusted root they are judged "
                             "against")
        attestations = tuple(attestation(a) for a in listed(section, "attestations", "images"))
        if attestations and not (keys or identities):
            raise ValueError("images.attestations need images.keys or images.identities: who signed them")
        scopes = listed(section, "scopes", "images") or (["*"] if keys or identities else [])
        return ImageSettings(keys, tuple(str(s) for s in scopes), identities, str(root), attestations)

    def dump(self, value: ImageSettings) -> Doc | None:
        if not value.policed:
            return None
        return {"scopes": list(value.scopes),
                **({"keys": [{"name": name, "file": file} for name, file in value.keys]} if value.keys else {}),
                **({"identities": [{"issuer": i.issuer, "subject": i.subject} for i in value.identities],
                    "trustedRoot": value.trusted_root} if value.identities else {}),
                **({"attestations": [{"predicateType": a.predicate_type, **dict(a.conditions)}
                                     for a in value.attestations]} if value.attestations else {})}

    def create(self, options: Mapping[str, object]) -> tuple[ImageSettings, dict[str, bytes]]:
        paths = [Path(str(p)) for p in option_values(options, "image_keys")]
        scopes = [str(s) for s in option_values(options, "image_scopes")]
        identities = tuple(_identity_option(str(i)) for i in option_values(options, "image_identities"))
        root = options.get("trusted_root")
        provenance = options.get("require_provenance")
        try:
            builder = _pattern(provenance, "--require-provenance") if isinstance(provenance, str) else None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        attestations = (AttestationRule(SLSA_PROVENANCE, (("builder", builder),)),) if builder is not None else ()
        if attestations and not (paths or identities):
            raise UsageError("--require-provenance needs --image-key or --image-identity: who signed the provenance")
        if scopes and not paths and not identities:
            raise UsageError("--image-scope needs --image-key or --image-identity: who those images must be "
                             "signed by")
        if identities and not isinstance(root, Path):
            raise UsageError("--image-identity needs --trusted-root FILE: the Sigstore trusted_root.json keyless "
                             "signatures are judged against (this site never fetches one)")
        trusted = [(f"image-{key_name(path)}", load_trusted_key(path)) for path in paths]  # readable keys, now
        keys = tuple((name, f"{TRUST_DIR}/{name}.pub") for name, _ in trusted)
        files = {file: public_pem(key.key) for (_, file), (_, key) in zip(keys, trusted, strict=True)}
        root_file = ""
        if identities and isinstance(root, Path):
            root_file = f"{TRUST_DIR}/{ROOT_FILE}"
            files[root_file] = check_root(read_operator_file(root, "a Sigstore trusted root"), str(root))
        return ImageSettings(keys, tuple(scopes or (["*"] if keys or identities else [])), identities,
                             root_file, attestations), files


ROOT_FILE = "sigstore-trusted-root.json"


def identity(issuer: str, subject: str) -> Identity:
    """A keyless signer: its subject must be a regular expression (ValueError naming it)."""
    try:
        re.compile(subject)
    except re.error as exc:
        raise ValueError(f"identity subject {subject!r} is not a regular expression ({exc})") from None
    return Identity(issuer, subject)


def attestation(item: object) -> AttestationRule:
    """An `images.attestations[]` item: `{predicateType, builder, repository, ref}` (ValueError naming
    what is wrong)."""
    where = "images.attestations[]"
    if not isinstance(item, dict) or set(item) - {"predicateType", *FIELDS}:
        raise ValueError(f"{where} is {{predicateType, {', '.join(FIELDS)}}}")
    conditions = tuple((name, _pattern(text(item, name, where), f"{where}.{name}")) for name in FIELDS if name in item)
    return AttestationRule(text(item, "predicateType", where), conditions)


def _pattern(value: str, where: str) -> str:
    """`value` when it is a regular expression; ValueError naming `where` otherwise."""
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"{where} {value!r} is not a regular expression ({exc})") from None
    return value


def _identity_option(value: str) -> Identity:
    issuer, sep, subject = value.partition("=")
    if not sep or not issuer or not subject:
        raise UsageError(f"--image-identity {value!r}: write ISSUER=SUBJECT_REGEXP",
                         hint="--image-identity 'https://token.actions.githubusercontent.com=https://github.com/acme/.*'")
    try:
        return identity(issuer, subject)
    except ValueError as exc:
        raise UsageError(f"--image-identity: {exc}") from None


def check_root(data: bytes, where: str) -> bytes:
    """A Sigstore trusted root's bytes, when they parse as one (UsageError naming the file otherwise)."""
    try:
        Root.parse(data)
    except KeylessRefused as exc:
        raise UsageError(f"{where} is not a Sigstore trusted root: {exc}") from None
    return data


def pinned_root(site: SiteConfig) -> Path | None:
    """The file of the Sigstore trusted root the site pins (None: it judges no keyless signature)."""
    settings = cast(ImageSettings, site.section(KEY))
    return site.directory / settings.trusted_root if settings.identities and settings.trusted_root else None


def image_policy(site: SiteConfig) -> tuple[ImageRule, Root | None] | None:
    """The site's image policy: images matching a scope need a valid cosign signature by one of its
    keys, or a keyless one by one of its identities judged against its pinned root; None: no policy."""
    settings = cast(ImageSettings, site.section(KEY))
    if not settings.policed:
        return None
    keys = tuple(load_trusted_key(site.directory / file, name) for name, file in settings.keys)
    root = Root.load(site.directory / settings.trusted_root) if settings.trusted_root else None
    return ImageRule(settings.scopes, keys, settings.identities, settings.attestations), root
