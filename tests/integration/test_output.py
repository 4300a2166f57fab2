"""Output to a reader that went away (`bundler inspect b.tar | head -1`) ends quietly, as CLI tools do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
