"""Output to a reader that went away (`bundler inspect b.tar | head -1`) ends quietly, as CLI tools do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.attack_cases import forge_json_member
from tests.conftest import Keys


@pytest.mark.parametrize("args", [["inspect", "{bundle}"], ["inspect", "{bundle}", "--json"], ["--help"],
                                  ["verify", "{bundle}", "--key", "{pub}", "--json"]])
def test_a_closed_pipe_ends_quietly(args: list[str], keys: Keys, tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: empty, version: 1.0.0}\n"
                                     "spec:\n  updates:\n    - path: f.bin\n")
    (tmp_path / "f.bin").write_bytes(b"payload")
    built = subprocess.run([sys.executable, "-m", "bundler.cli", "build", "p.yaml", "-o", "b.bundle.tar", "--key",
                            str(keys.release.key)], cwd=tmp_path, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first byte
    try:
        command = [a.format(bundle=tmp_path / "b.bundle.tar", pub=keys.release.pub) for a in args]
        p = subprocess.run([sys.executable, "-m", "bundler.cli", *command], stdout=write_end,
                           stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert p.returncode in (0, 141) and p.stderr == "", (p.returncode, p.stderr)


def test_control_characters_in_a_forged_bundle_are_shown_escaped(keys: Keys, tmp_path: Path) -> None:
    """A bundle.json whose name holds a newline, a fake `verified` line and a terminal escape
    sequence cannot make inspect or verify print what the bundle does not say."""
    (tmp_path / "p.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: good, version: 1.0.0}\n"
                                     "spec:\n  updates:\n    - path: f.bin\n")
    (tmp_path / "f.bin").write_bytes(b"payload")
    assert subprocess.run([sys.executable, "-m", "bundler.cli", "build", "p.yaml", "-o", "good.bundle.tar", "--key",
                           str(keys.release.key)], cwd=tmp_path, capture_output=True).returncode == 0
    def forge(doc: dict[str, Any]) -> None:
        doc["name"] = "good\nverified\x1b[2J\x1b[H"
        doc.pop("content_digest")

    forged = forge_json_member(tmp_path / "good.bundle.tar", tmp_path / "forged.bundle.tar", "bundle.json", forge)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "bundler.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True)

    # such a name is not a bundle name: refused before anything is shown, and the refusal quotes it escaped
    for command in (["inspect", str(forged)], ["verify", str(forged), "--key", str(keys.release.pub)]):
        refused = run(*command)
        assert refused.returncode == 3 and refused.stdout == ""
        assert "\x1b" not in refused.stderr and "verified" not in refused.stderr.splitlines()
        assert "name: 'good\\nverified\\x1b[2J\\x1b[H' is not a bundle name" in refused.stderr, refused.stderr
