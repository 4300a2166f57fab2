"""The layers hold (import-linter's contracts in pyproject.toml, run by `make lint`), and the check is
real: one import from a lower layer to a higher one in a copy of the tree breaks it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).with_name("lint-imports"))], cwd=tree, capture_output=True,
                          text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})


def test_an_import_that_climbs_a_layer_fails_the_contracts(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "bundler", tree / "bundler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    kept = lint_imports(tree)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    media = tree / "bundler" / "oci" / "media.py"  # the format's OCI media types ...
    media.write_text(media.read_text() + "\nfrom bundler.site.config import SiteConfig  # noqa: E402,F401\n")
    broken = lint_imports(tree)  # ... importing the site, a higher layer
    assert broken.returncode == 1
    assert "BROKEN" in broken.stdout and "bundler.oci.media -> bundler.site.config" in broken.stdout
