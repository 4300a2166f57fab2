"""Small Git source repositories for tests and the demo, made with the real git."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.email=r@example.com", "-c", "user.name=R", *args], cwd=cwd, check=True,
                   capture_output=True)


def commit(repo: Path, name: str, text: str | None = None) -> None:
    """Write file `name` (its content: `text`, or the name repeated) and commit it."""
    (repo / name).write_text(text if text is not None else name * 100)
    git("add", ".", cwd=repo)
    git("commit", "-qm", name, cwd=repo)


def new_repo(path: Path, name: str, text: str | None = None) -> Path:
    """A repository on branch main with one commit of one file."""
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    commit(path, name, text)
    return path
