"""mkdocs hook: the documentation's home page is the README itself (one text, two places to read it).

docs/index.md is a placeholder; its source is README.md with the README's `docs/...` links made
relative to docs/ (mkdocs --strict then checks every one of them like any other link).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def on_page_read_source(page: Any, config: Any) -> str | None:
    if page.file.src_uri != "index.md":
        return None
    readme = (Path(config.config_file_path).parent / "README.md").read_text(encoding="utf-8")
    return readme.replace("[`docs/`](docs/index.md)", "`docs/`").replace("](docs/", "](")
