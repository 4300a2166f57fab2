"""The one place that runs `git`: clear errors when it is missing, too old, or a command fails."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from bundler import tools
from bundler.errors import BundlerError, UnreachableError, UsageError

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
           "GCM_INTERACTIVE": "never"}
MIN_VERSION = (2, 25)  # git bundle create with many refs, http-backend and update-ref --stdin transactions


class GitError(BundlerError):
    """A git command failed; the message carries git's own words."""


@cache
def git_binary() -> str:
    path = shutil.which("git")
    if path is None:
        raise UsageError("git is not installed; bundler needs it for repositories",
                         hint="apt-get install git (2.25 or newer)")
    out = tools.run([path, "--version"]).stdout.decode(errors="replace")
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None or (int(match[1]), int(match[2])) < MIN_VERSION:
        raise UsageError(f"git is too old ({out.strip()}); bundler needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer")
    return path


def run(args: Sequence[str | Path], cwd: Path | None = None, input: bytes | None = None,
        remote: str | None = None, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run git; on failure raise GitError (UnreachableError when `remote` could not be reached).
    Git never prompts (no terminal prompt; ssh in batch mode: an unknown host key or a password
    fails at once) and is stopped after its timeout (longer when it talks to a `remote`)."""
    proc = tools.run([git_binary(), *args], cwd=cwd, input=input, env=GIT_ENV,
                     timeout=tools.remote_timeout() if remote is not None else None)
    if check and proc.returncode != 0:
        err = [line for line in proc.stderr.decode(errors="replace").strip().splitlines() if line.strip()]
        first = next((i for i, line in enumerate(err) if line.startswith(("fatal:", "error:"))), None)
        if first is None:
            detail = "; ".join(err[-2:]) or f"exit {proc.returncode}"
        else:  # git's own line, after what the transport said (ssh: "Host key verification failed.")
            detail = " ".join([*err[max(0, first - 2):first], err[first].split(": ", 1)[-1]])
        if remote is not None:  # talking to a source: not reaching it, or not being let in
            raise UnreachableError(f"cannot fetch repository {remote}: {detail}",
                                   hint="check the URL and your git credentials (git config, ssh agent)")
        raise GitError(f"git {' '.join(map(str, args[:2]))} failed: {detail}")
    return proc


def out(args: Sequence[str | Path], cwd: Path | None = None) -> str:
    return run(args, cwd).stdout.decode().strip()


HEX_OID = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")
MAX_HEADER = 4 << 20


@dataclass(frozen=True)
class BundleHeader:
    """The text header of a git bundle (v2 or v3): the commits it needs, and the refs it carries."""

    prerequisites: tuple[str, ...]
    refs: dict[str, str]


def parse_bundle_header(chunks: Iterable[bytes]) -> BundleHeader:
    """Read a git bundle's header from its first bytes; ValueError when it is not a git bundle."""
    data = b""
    for chunk in chunks:
        data += chunk
        if b"\n\n" in data or len(data) > MAX_HEADER:
            break
    header, sep, _ = data.partition(b"\n\n")
    if not sep:
        raise ValueError("no end of header (not a git bundle, or cut short)")
    lines = header.decode("utf-8", errors="strict").split("\n")
    if lines[0] not in ("# v2 git bundle", "# v3 git bundle"):
        raise ValueError(f"not a git bundle (first line {lines[0][:40]!r})")
    prerequisites, refs = [], {}
    for line in lines[1:]:
        if line.startswith("@"):
            continue  # v3 capabilities
        oid, _, rest = line.partition(" ")
        if oid.startswith("-") and HEX_OID.match(oid[1:]):
            prerequisites.append(oid[1:])
        elif HEX_OID.match(oid) and rest.startswith("refs/"):
            refs[rest] = oid
        else:
            raise ValueError(f"unreadable header line {line[:60]!r}")
    return BundleHeader(tuple(prerequisites), refs)
