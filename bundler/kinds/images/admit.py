"""What a site refuses of images that verified: a tag derived from an image (`sha256-<hex>.sig`, ...)
moves only with its subject and belongs to the bundle name that set it; images the site's image keys
cover need a valid cosign signature among what they carry."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.verify import digest_problem, read_verified
from bundler.jsontypes import Doc
from bundler.kinds.base import Admit
from bundler.kinds.images.cosign import MAX_PAYLOAD, Verdict, judge_images
from bundler.kinds.images.entry import ImageEntry
from bundler.kinds.images.keyless import MAX_ROOT, ROOT_PAYLOAD, KeylessRefused, Root
from bundler.kinds.images.settings import KEY, image_policy
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.reference import ImageReference, site_path
from bundler.problems import Problem
from bundler.site.state import SiteState, TagOwner
from bundler.units import printable as p

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.site.config import SiteConfig


class ImageAdmit(Admit):
    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """What travels with an image (signatures, attestations, SBOMs, referrers) is for an image
        this bundle carries, and its tags are this bundle name's to move; images the site's image
        keys cover need a valid cosign signature among what they carry."""
        read = bundle_reader(reader)
        entries = cast("tuple[ImageEntry, ...]", manifest.entries(self.kind.key))
        found = derived_tag_problems(entries, SiteState.load(site.directory).tags, manifest, read,
                                     site.image_repository)
        try:
            verdicts = site_verdicts(site, reader, manifest)
        except KeylessRefused as exc:
            return [*found, Problem(problems.IMAGE_UNSIGNED, ROOT_PAYLOAD, f"the bundle's Sigstore trusted root "
                                    f"({ROOT_PAYLOAD}) is not one: {exc}", hint="ask release engineering: the "
                                    "profile's spec.trustedRoot; nothing was changed")]
        return found + [Problem(problems.IMAGE_UNSIGNED, v.image, f"image policy of this site: {v.image} matches "
                                f"{', '.join(v.rule)} and {why}",
                                hint="this site takes only images signed by its image keys or identities: ask "
                                     "release engineering to sign them (`cosign sign`) and build again; nothing "
                                     "was changed")
                        for v in verdicts or () for why in v.refusals]

    def judged(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Doc]:
        try:
            return [v.to_dict() for v in site_verdicts(site, reader, manifest) or ()]
        except KeylessRefused:
            return []  # admission names it


def site_verdicts(site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Verdict] | None:
    """What the site's image policy judges of the bundle's images (None: the site has no policy);
    KeylessRefused when the bundle carries a trusted root that is not one."""
    policy = image_policy(site)
    if policy is None:
        return None
    rule, pinned = policy
    entries = cast("tuple[ImageEntry, ...]", manifest.entries(KEY))
    return judge_images(entries, [rule], bundle_reader(reader), import_root(pinned, reader, manifest))


def import_root(pinned: Root | None, reader: BundleReader, manifest: BundleManifest) -> Root | None:
    """The root an import's keyless signatures are judged against: the one the bundle carries (signed
    with it per the site's trust policy: the next one the site pins) when the site judges keyless
    signatures at all, else the pinned one. KeylessRefused when the carried one is not a root."""
    carried = read_verified(reader, manifest, ROOT_PAYLOAD, MAX_ROOT) if pinned is not None else None
    if carried is None:
        return pinned
    root = Root(carried)
    root.trusted()
    return root


def bundle_reader(reader: BundleReader) -> Callable[[str], bytes]:
    """A small blob of the bundle by its digest, checked (ValueError naming the file otherwise)."""
    def read(digest: str) -> bytes:
        path = layout.blob_path(digest)
        data = reader.read_small(path, MAX_PAYLOAD)
        if sha256_digest(data) != digest:
            raise ValueError(digest_problem(path, digest[7:], hashlib.sha256(data).hexdigest()).message)
        return data

    return read


def derived_tag_problems(entries: Sequence[ImageEntry], tags: dict[str, TagOwner],
                         manifest: BundleManifest, read: Callable[[str], bytes],
                         placed: Callable[[str, str], str] = site_path) -> list[Problem]:
    """A tag derived from an image (`sha256-<hex>.sig`, `.att`, `.sbom`, the referrers fallback) moves
    only with its subject: the bundle must carry that image (its manifest, or one under its index),
    and the tag belongs to the bundle name that first set it (`tags`: the site's state)."""
    found = []
    for entry in entries:
        subjects = {entry.digest}
        if entry.media_type in media.INDEX_TYPES:
            with contextlib.suppress(ValueError, media.ManifestError):  # the graph check names what is wrong
                subjects |= {child.digest for child in media.index_children(read(entry.digest))}
        ref = ImageReference.parse(entry.ref)
        repo = placed(ref.host, ref.repository)  # where the site's registry keeps it
        for extra in entry.extras:
            where = f"{repo}:{extra.tag}"
            if extra.subject not in subjects:
                found.append(Problem(
                    problems.SUBJECT_NOT_CARRIED, where,
                    f"refused: {p(extra.kind)} {p(extra.tag)} travels with image {p(entry.ref)}, which is not its "
                    f"subject ({p(extra.subject[:19])}); a bundle moves only its own images' signatures",
                    extra.subject, entry.digest, hint="ask release engineering: the bundle is malformed or forged"))
                continue
            owner = tags.get(where)
            if owner is not None and owner.name != manifest.name and owner.digest != extra.digest:
                found.append(Problem(
                    problems.NAME_OWNED, where,
                    f"refused: {where} ({p(extra.kind)} of {p(entry.ref)}) belongs to {p(owner.name)} "
                    f"{p(owner.version)}; this bundle ({p(manifest.name)} {p(manifest.version)}) would "
                    f"replace it with {extra.digest[:19]}", owner.digest, extra.digest,
                    hint=f"another product re-signed this image: ask release engineering; a deliberate hand-over: "
                         f"`bundler site hand-over DIR {where} --to {p(manifest.name)}`"))
    return found
