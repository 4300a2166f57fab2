"""`bundler site init --image-key --image-scope`: the site's own image policy."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.kinds.base import Options


class ImageOptions(Options):
    def site_init_options(self) -> list[click.Option]:
        return [click.Option(["--image-key", "image_keys"], multiple=True,
                             type=click.Path(dir_okay=False, path_type=Path),
                             help="a cosign public key (repeatable): images in --image-scope must carry a valid "
                                  "signature by one"),
                click.Option(["--image-scope", "image_scopes"], multiple=True, metavar="GLOB",
                             help="images the image keys cover, by name (registry.example.com/team/*; repeatable; "
                                  "default *)")]
