"""Container images: `spec.images`, carried with their digests into the bundle's OCI layout, and
pushed to the site registry under `<source host>/<path>` with their tags."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from bundler import problems
from bundler.bundle import layout
from bundler.bundle.sbom import SbomItem
from bundler.bundle.verify import digest_problem
from bundler.errors import RefusedError
from bundler.kinds.base import Artifact, CollectContext, ContentKind, Part, changes, oci_item
from bundler.kinds.images.cosign import MAX_PAYLOAD, ImageRule, load_rules, read_blob, unsigned_images
from bundler.kinds.images.entry import ImageEntry
from bundler.names import sha256_digest
from bundler.oci import media
from bundler.oci.layout import OciTop
from bundler.oci.reference import ImageReference, site_path
from bundler.parallel import run_parallel
from bundler.problems import Problem
from bundler.site.config import SiteState
from bundler.units import printable as p

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.kinds.images.spec import ImageSpec
    from bundler.profile import Checker
    from bundler.site.config import SiteConfig


EXTRAS = "extras"  # import counts signatures, attestations, SBOMs and referrers indexes here
EXTRA_NAMES = {"sig": "signature", "att": "attestation", "sbom": "SBOM", "referrers": "referrers"}


class Images(ContentKind["ImageSpec", ImageEntry]):
    key, title, noun, entry_type = "images", "images", "image", ImageEntry
    example = """\
  images:                                         # container images, with their signatures and SBOMs
    - 127.0.0.1:5000/team/app:1.0                 # by tag (a registry on loopback: plain HTTP)
    # - ghcr.io/org/app:2.1@sha256:<64 hex>       # tag and digest: the digest is what is fetched
    # - ref: quay.io/org/multi:3.0
    #   platforms: [linux/amd64]                  # a subset of a multi-arch index
    # - docker-daemon:myapp:dev                   # from the local Docker engine
"""
    in_v1 = always_reported = True

    def parse_spec(self, check: Checker, item: Any, line: int, where: str) -> ImageSpec | None:
        from bundler.kinds.images.spec import parse_image  # build-side: loaded when a profile is read

        return parse_image(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[Any, int]], line: int) -> None:
        from bundler.kinds.images.spec import check_images

        check_images(check, list(specs))

    def content(self, entries: Sequence[ImageEntry]) -> list[Any]:
        """[ref, digest], and the digests of what travels with it (when something does)."""
        return sorted([i.ref, i.digest, *([sorted(e.digest for e in i.extras)] if i.extras else [])]
                      for i in entries)

    def collect(self, context: CollectContext, specs: Sequence[ImageSpec]) -> Part:
        from bundler.kinds.images.collect import collect_images  # build-side: loaded when a build runs
        from bundler.kinds.images.spec import ImageSpec

        wanted = list(specs)
        known = {spec.text for spec in wanted}
        for text in context.requests.get(self.key, []):  # images other kinds declare (charts' `images: auto`)
            spec = ImageSpec(ImageReference.parse(text))
            if spec.text not in known:
                known.add(spec.text)
                wanted.append(spec)
        entries = collect_images(wanted, context.oci, context.client_for, context.staging, context.jobs)
        if context.profile.settings.get("extras") is not False:
            entries = self._with_extras(context, wanted, entries)
        rules = load_rules(context.profile.settings.get("imagePolicy") or (), context.base)
        unsigned = unsigned_images(entries, rules, lambda digest: read_blob(context.oci, digest, MAX_PAYLOAD))
        if unsigned:
            raise RefusedError(f"image policy: {'; '.join(unsigned)}",
                               hint="sign them (`cosign sign --key`) in the source registry, or fix spec.imagePolicy; "
                                    "nothing was written")
        return Part(tuple(entries))

    def _with_extras(self, context: CollectContext, specs: list[ImageSpec],
                     entries: list[ImageEntry]) -> list[ImageEntry]:
        from bundler.kinds.images.extras import collect_extras

        def one(item: tuple[ImageSpec, ImageEntry]) -> ImageEntry:
            spec, entry = item
            if not spec.extras or not isinstance(spec.ref, ImageReference):
                return entry
            extras = collect_extras(context.client_for(spec.ref.host), spec.ref.repository, entry, context.oci)
            return replace(entry, extras=extras)

        return run_parallel(one, list(zip(specs, entries, strict=True)), context.jobs)

    settings = ("imagePolicy", "extras")

    def parse_setting(self, check: Checker, key: str, value: Any, line: int) -> Any:
        if key == "extras":
            if not isinstance(value, bool):
                check.fail(line, "spec.extras must be true or false (carry signatures, attestations, SBOMs, referrers)")
            return value
        from bundler.kinds.images.spec import parse_policy

        return parse_policy(check, value, line, f"spec.{key}")

    def oci_tops(self, entries: Sequence[ImageEntry]) -> list[OciTop]:
        tops = [OciTop(f"image {i.ref}", i.digest, i.media_type, i.ref, i.platforms[:1]) for i in entries]
        for image in entries:  # named in index.json by their tag in the image's repository
            parsed = ImageReference.parse(image.ref)
            name = f"{parsed.host}/{parsed.repository}"
            tops += [OciTop(f"{e.kind} {e.tag} of image {image.ref}", e.digest, e.media_type, f"{name}:{e.tag}")
                     for e in image.extras]
        return tops

    def admission(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest) -> list[Problem]:
        """What travels with an image (signatures, attestations, SBOMs, referrers) is for an image
        this bundle carries, and its tags are this bundle name's to move; images the site's image
        keys cover need a valid cosign signature among what they carry."""
        def read(digest: str) -> bytes:
            path = layout.blob_path(digest)
            data = reader.read_small(path, MAX_PAYLOAD)
            if sha256_digest(data) != digest:
                raise ValueError(digest_problem(path, digest[7:], hashlib.sha256(data).hexdigest()).message)
            return data

        entries = cast("tuple[ImageEntry, ...]", manifest.entries(self.key))
        found = derived_tag_problems(entries, SiteState.load(site.directory).tags, manifest, read,
                                     site.image_repository)
        scopes, keys = site.image_policy()
        if not keys:
            return found
        rule = ImageRule(scopes, keys)
        return found + [Problem(problems.IMAGE_UNSIGNED, why.split(" ", 1)[0], f"image policy of this site: {why}",
                        hint="this site takes only images signed by its image keys: ask release engineering to "
                             "sign them (`cosign sign --key`) and build again; nothing was changed")
                for why in unsigned_images(entries, [rule], read)]

    def site_artifacts(self, entries: Sequence[ImageEntry], site: SiteConfig) -> list[Artifact]:
        """Images keep their source name: `<source host>/<path>`, docker-daemon ones their engine name."""
        out = []
        for entry in entries:
            ref = ImageReference.parse(entry.ref)
            repo = site.image_repository(ref.host, ref.repository)
            out.append(Artifact(self.key, entry.ref, entry.digest, entry.media_type, repo, ref.tag))
            out += [Artifact(EXTRAS, f"{e.tag} of {entry.ref}", e.digest, e.media_type, repo, e.tag,
                             release_tag=False)  # named after their subject (owned: derived_tag_problems)
                    for e in entry.extras]  # as they were: a site's cosign, Kyverno, Flux find them
        return out

    def sources(self, entries: Sequence[ImageEntry]) -> list[str]:
        return sorted({ImageReference.parse(i.ref).host for i in entries})

    def inspect_rows(self, entries: Sequence[ImageEntry]) -> list[dict[str, Any]]:
        return [{"ref": i.ref, "digest": i.digest, "platforms": list(i.platforms), "source": i.source,
                 "upstream_digest": i.upstream_digest,
                 "extras": [{**e.to_dict(), "tag": e.tag} for e in i.extras]} for i in entries]

    def inspect_lines(self, rows: list[dict[str, Any]]) -> list[str]:
        out = [f"images ({len(rows)}):"]
        for image in rows:
            platforms = f"  [{', '.join(p(x) for x in image['platforms'])}]" if image["platforms"] else ""
            upstream = f"\n    filtered from {image['upstream_digest']}" if image["upstream_digest"] else ""
            out.append(f"  {p(image['ref'])}\n    {p(image['digest'])}{platforms}{upstream}")
            for extra in image["extras"]:
                of = "" if extra["subject"] == image["digest"] else f" (of {extra['subject'][:19]})"
                out.append(f"    + {EXTRA_NAMES[extra['kind']]} {p(extra['tag'])}{of}")
        if any(image["extras"] for image in rows):
            out.append("  (+ carried with the image: inspect checks none of them; build and import check the keyed "
                       "cosign signatures of the images an image policy covers)")
        return out

    def sbom(self, entries: Sequence[ImageEntry]) -> list[SbomItem]:
        items = []
        for image in entries:
            items.append(oci_item(image.ref, image.digest, "container", ("bundler:kind", "image")))
            parsed = ImageReference.parse(image.ref)
            items += [oci_item(f"{parsed.host}/{parsed.repository}:{e.tag}", e.digest, "data",
                               ("bundler:kind", f"image-{e.kind}"), ("bundler:subject", e.subject))
                      for e in image.extras if e.kind in ("sbom", "att")]  # what the image's own SBOMs say
        return items

    def import_summary(self, added: dict[str, int], unchanged: dict[str, int]) -> str:
        extras = (f"{added[EXTRAS]} signatures, attestations, SBOMs or referrers added, {unchanged[EXTRAS]} unchanged; "
                  if added.get(EXTRAS) or unchanged.get(EXTRAS) else "")
        return super().import_summary(added, unchanged) + extras

    def diff(self, old: Sequence[ImageEntry], new: Sequence[ImageEntry]) -> dict[str, Any]:
        return changes({i.ref: i.digest for i in old}, {i.ref: i.digest for i in new})


KIND = Images()


def derived_tag_problems(entries: Sequence[ImageEntry], tags: dict[str, dict[str, str]],
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
            if owner is not None and owner.get("name") != manifest.name and owner.get("digest") != extra.digest:
                found.append(Problem(
                    problems.NAME_OWNED, where,
                    f"refused: {where} ({p(extra.kind)} of {p(entry.ref)}) belongs to {p(owner.get('name'))} "
                    f"{p(owner.get('version'))}; this bundle ({p(manifest.name)} {p(manifest.version)}) would "
                    f"replace it with {extra.digest[:19]}", owner.get("digest"), extra.digest,
                    hint=f"another product re-signed this image: ask release engineering; a deliberate hand-over: "
                         f"`bundler site hand-over DIR {where} --to {p(manifest.name)}`"))
    return found
