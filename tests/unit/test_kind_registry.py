"""Kinds other packages install register through the `bundler.kinds` entry points: after the
built-in ones, by entry-point name; one that is not a ContentKind, or takes a key already taken, stops
every command with a message naming the entry point (never a silent second owner of a key)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"


def installed(tmp_path: Path, value: str, module: str) -> subprocess.CompletedProcess[str]:
    """`bundler --help` with one more package installed: `module` and its entry point `value`."""
    (tmp_path / "extra.py").write_text(module)
    info = tmp_path / "extra-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extra\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[bundler.kinds]\nextra = {value}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(PLUGINS)])}
    return subprocess.run([sys.executable, "-c", "import bundler.kinds as k; print([x.key for x in k.KINDS])"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_an_installed_kind_comes_after_the_built_in_ones(tmp_path: Path) -> None:
    r = installed(tmp_path, "extra:KIND", "from notes_kind import Notes\nclass Other(Notes):\n    key = 'other'\n"
                                          "KIND = Other()\n")
    assert r.returncode == 0, r.stderr
    # by entry-point name: extra (the kind 'other') before notes
    assert r.stdout.strip() == "['images', 'charts', 'repos', 'updates', 'artifacts', 'other', 'notes']"


@pytest.mark.parametrize(("module", "message"), [
    ("from notes_kind import Notes\nclass Images(Notes):\n    key = 'images'\nKIND = Images()\n",
     "registers the kind 'images' a second time"),
    ("KIND = object()\n", "is not a ContentKind"),
])
def test_a_kind_that_takes_a_key_or_is_no_kind_is_refused_naming_its_entry_point(
        tmp_path: Path, module: str, message: str) -> None:
    r = installed(tmp_path, "extra:KIND", module)
    assert r.returncode != 0 and "extra = extra:KIND" in r.stderr and message in r.stderr
