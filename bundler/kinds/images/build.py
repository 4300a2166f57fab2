"""Images in a profile (`spec.images`, `spec.imagePolicy`, `spec.extras`) and their collection: the
images other kinds ask for too, what travels with them, and the image policy, checked before anything
is written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from bundler.errors import RefusedError, UsageError
from bundler.kinds.base import Build, CollectContext, Part
from bundler.kinds.images.collect import collect_images
from bundler.kinds.images.cosign import MAX_PAYLOAD, ImageRule, load_rules, read_blob, unsigned_images
from bundler.kinds.images.entry import ImageEntry
from bundler.kinds.images.extras import collect_extras
from bundler.kinds.images.keyless import ROOT_PAYLOAD, KeylessRefused, Root
from bundler.kinds.images.spec import ImageSpec, check_images, parse_image, parse_policy
from bundler.kinds.images.vex import attach_vex, read_vex
from bundler.oci.content import BlobSource
from bundler.oci.reference import ImageReference
from bundler.parallel import run_parallel

if TYPE_CHECKING:
    from bundler.profile import Checker


class ImageBuild(Build[ImageSpec]):
    example = """\
  images:                                         # container images, with their signatures and SBOMs
    - 127.0.0.1:5000/team/app:1.0                 # by tag (a registry on loopback: plain HTTP)
    # - ghcr.io/org/app:2.1@sha256:<64 hex>       # tag and digest: the digest is what is fetched
    # - ref: quay.io/org/multi:3.0
    #   platforms: [linux/amd64]                  # a subset of a multi-arch index
    # - docker-daemon:myapp:dev                   # from the local Docker engine
"""
    settings = ("imagePolicy", "extras", "trustedRoot")

    def parse_spec(self, check: Checker, item: object, line: int, where: str) -> ImageSpec | None:
        return parse_image(check, item, line, where)

    def check_specs(self, check: Checker, specs: Sequence[tuple[ImageSpec, int]], line: int) -> None:
        check_images(check, list(specs))

    def parse_setting(self, check: Checker, key: str, value: object, line: int) -> object:
        if key == "extras":
            if not isinstance(value, bool):
                check.fail(line, "spec.extras must be true or false (carry signatures, attestations, SBOMs, referrers)")
            return value
        if key == "trustedRoot":  # a Sigstore trusted_root.json, relative to the profile
            if not isinstance(value, str) or not value:
                check.fail(line, "spec.trustedRoot must name a trusted_root.json file")
                return None
            return value
        return parse_policy(check, value, line, f"spec.{key}")

    def collect(self, context: CollectContext, specs: Sequence[ImageSpec]) -> Part:
        wanted = list(specs)
        known = {spec.text for spec in wanted}
        for text in context.requests.get(self.kind.key, []):  # images other kinds declare (charts' `images: auto`)
            spec = ImageSpec(ImageReference.parse(text))
            if spec.text not in known:
                known.add(spec.text)
                wanted.append(spec)
        entries = collect_images(wanted, context.oci, context.client_for, context.staging, context.jobs)
        if context.profile.settings.get("extras") is not False:
            entries = _with_extras(context, wanted, entries)
        entries = [attach_vex(entry, read_vex(context.base / spec.vex), context.oci) if spec.vex else entry
                   for spec, entry in zip(wanted, entries, strict=True)]
        policy = context.profile.settings.get("imagePolicy")
        rules = load_rules(policy if isinstance(policy, tuple) else (), context.base)
        root = self.trusted_root(context, rules)
        unsigned = unsigned_images(entries, rules, lambda digest: read_blob(context.oci, digest, MAX_PAYLOAD), root)
        if unsigned:
            raise RefusedError(f"image policy: {'; '.join(unsigned)}",
                               hint="sign them (`cosign sign`, with the key or the identity the rule names) in the "
                                    "source registry, or fix spec.imagePolicy; nothing was written")
        named = context.profile.settings.get("trustedRoot")
        if root is None or not isinstance(named, str):
            return Part(tuple(entries))
        carried = context.base / named  # for the sites to pin: the next root they judge against
        return Part(tuple(entries), {ROOT_PAYLOAD: BlobSource(root.digest, len(root.data), named, path=carried)})

    @staticmethod
    def trusted_root(context: CollectContext, rules: Sequence[ImageRule]) -> Root | None:
        """The profile's `spec.trustedRoot`, which keyless rules are judged against (none: such a rule
        is a usage error, not a silent pass)."""
        named = context.profile.settings.get("trustedRoot")
        if not isinstance(named, str):
            if any(rule.identities for rule in rules):
                raise UsageError("spec.imagePolicy names keyless identities, and spec.trustedRoot names no Sigstore "
                                 "trusted_root.json to judge them against",
                                 hint="add `trustedRoot: trusted_root.json` (the Sigstore instance's trusted root) "
                                      "under spec")
            return None
        try:
            root = Root.load(context.base / named)
            root.trusted()  # a trusted root, now: not at a site
        except OSError as exc:
            raise UsageError(f"spec.trustedRoot {named}: {exc.strerror or exc}") from None
        except KeylessRefused as exc:
            raise UsageError(f"spec.trustedRoot {named} is not a Sigstore trusted root: {exc}") from None
        return root


def _with_extras(context: CollectContext, specs: list[ImageSpec], entries: list[ImageEntry]) -> list[ImageEntry]:
    def one(item: tuple[ImageSpec, ImageEntry]) -> ImageEntry:
        spec, entry = item
        if not spec.extras or not isinstance(spec.ref, ImageReference):
            return entry
        extras = collect_extras(context.client_for(spec.ref.host), spec.ref.repository, entry, context.oci)
        return replace(entry, extras=extras)

    return run_parallel(one, list(zip(specs, entries, strict=True)), context.jobs)
