"""The images kind's section of site.yaml: the site's own image policy, cosign keys (copied under
trust/ at `site init`) and the image names they cover:

    images:
      scopes: ["ghcr.io/acme/*"]
      keys:
        - {name: image-cosign, file: trust/image-cosign.pub}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from bundler.errors import UsageError
from bundler.jsontypes import Doc
from bundler.keyfiles import key_name, load_trusted_key
from bundler.kinds.base import Settings, option_values
from bundler.signing import TrustedKey, public_pem
from bundler.site.config import TRUST_DIR
from bundler.site.sections import listed, text

if TYPE_CHECKING:
    from bundler.site.config import SiteConfig

KEY = "images"


@dataclass(frozen=True)
class ImageSettings:
    keys: tuple[tuple[str, str], ...] = ()  # cosign keys (name, file in the site) the scopes' images need
    scopes: tuple[str, ...] = ()  # image name globs (host/path) the keys cover


class ImageSiteSettings(Settings[ImageSettings]):
    def parse(self, section: Mapping[str, object], directory: Path) -> ImageSettings:
        if unknown := set(section) - {"scopes", "keys"}:
            raise ValueError(f"unknown keys in images: {', '.join(sorted(unknown))}")
        keys = tuple((text(k, "name", "images.keys[]"), text(k, "file", "images.keys[]"))
                     for k in listed(section, "keys", "images"))
        scopes = listed(section, "scopes", "images") or (["*"] if keys else [])
        return ImageSettings(keys, tuple(str(s) for s in scopes))

    def dump(self, value: ImageSettings) -> Doc | None:
        if not value.keys:
            return None
        return {"scopes": list(value.scopes), "keys": [{"name": name, "file": file} for name, file in value.keys]}

    def create(self, options: Mapping[str, object]) -> tuple[ImageSettings, dict[str, bytes]]:
        paths = [Path(str(p)) for p in option_values(options, "image_keys")]
        scopes = [str(s) for s in option_values(options, "image_scopes")]
        if scopes and not paths:
            raise UsageError("--image-scope needs --image-key: the cosign public key those images must be signed by")
        trusted = [(f"image-{key_name(path)}", load_trusted_key(path)) for path in paths]  # readable keys, now
        keys = tuple((name, f"{TRUST_DIR}/{name}.pub") for name, _ in trusted)
        files = {file: public_pem(key.key) for (_, file), (_, key) in zip(keys, trusted, strict=True)}
        return ImageSettings(keys, tuple(scopes or (["*"] if keys else []))), files


def image_policy(site: SiteConfig) -> tuple[tuple[str, ...], tuple[TrustedKey, ...]]:
    """(scopes, keys): images matching a scope need a valid cosign signature by one of the keys."""
    settings = cast(ImageSettings, site.section(KEY))
    return settings.scopes, tuple(load_trusted_key(site.directory / file, name) for name, file in settings.keys)
