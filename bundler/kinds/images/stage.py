"""What the site's image policy judged of an import's images, recorded when the import publishes
(DIR/images/verdicts/<content digest>.json: per image, the rule, the key or identity that signed it,
the trusted root a keyless signature was judged against, the attestations that held). The receipt
reports them for the releases the site runs (receipt.py); a refused import records nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bundler import names
from bundler.fsutil import atomic_write, make_dirs
from bundler.kinds.base import Stage, Staged, StageOptions
from bundler.kinds.images.admit import bundle_reader, import_root
from bundler.kinds.images.cosign import Verdict, judge_images
from bundler.kinds.images.entry import ImageEntry
from bundler.kinds.images.keyless import Root
from bundler.kinds.images.settings import image_policy, pinned_root

if TYPE_CHECKING:
    from bundler.bundle.manifest import BundleManifest
    from bundler.bundle.reader import BundleReader
    from bundler.site.config import SiteConfig

VERDICTS_DIR = "images/verdicts"


def verdicts_file(site: SiteConfig, content_digest: str) -> Path:
    return site.directory / VERDICTS_DIR / f"{content_digest.split(':', 1)[1]}.json"


class StagedVerdicts(Staged):
    def __init__(self, site: SiteConfig, manifest: BundleManifest, verdicts: list[Verdict],
                 rotate: tuple[Path, Root, Root] | None) -> None:
        self.site, self.manifest, self.verdicts, self.rotate = site, manifest, verdicts, rotate

    def publish(self) -> list[str]:
        path = verdicts_file(self.site, self.manifest.content_digest)
        make_dirs(path.parent)
        atomic_write(path, json.dumps({"name": self.manifest.name, "version": self.manifest.version,
                                       "judged_at": names.format_time(),
                                       "verdicts": [v.to_dict() for v in self.verdicts]}, indent=1).encode())
        if self.rotate is None:
            return []
        pinned, old, new = self.rotate
        atomic_write(pinned, new.data)  # the bundle verified per the site's trust policy: its root is the next
        return [f"the site's Sigstore trusted root was rotated: {old.digest[:19]} -> {new.digest[:19]} (carried by "
                f"{self.manifest.name} {self.manifest.version}, signed per this site's trust policy)"]


class ImageStage(Stage):
    def stage(self, site: SiteConfig, reader: BundleReader, manifest: BundleManifest, options: StageOptions,
              progress: Callable[[int], None]) -> Staged:
        policy = image_policy(site)
        if policy is None:
            return Staged()
        rule, pinned = policy
        root = import_root(pinned, reader, manifest)  # admission refused a carried root that is not one
        entries = cast("tuple[ImageEntry, ...]", manifest.entries(self.kind.key))
        where = pinned_root(site)
        rotate = (where, pinned, root) if where is not None and pinned is not None and root is not None \
            and root.digest != pinned.digest else None
        return StagedVerdicts(site, manifest, judge_images(entries, [rule], bundle_reader(reader), root), rotate)
