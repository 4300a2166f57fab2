"""The one way bundler runs another program (git, gpg, dpkg-deb, rpm, createrepo_c): found on PATH
or a clear error naming the Debian package; stdin closed (nothing can wait on a prompt); a timeout
after which the program and everything it started (ssh under git) are killed; an error that names
the tool and gives its own last words.

Timeouts: for commands that talk to a source (git fetch/clone; environment
`BUNDLER_REMOTE_TIMEOUT`, seconds, default 3600), and 600 s for the rest (`BUNDLER_TOOL_TIMEOUT`).
Services that run for long (the registry, `git http-backend` under the HTTPS service) are started by
bundler/site/service.py and server.py instead, and stopped with the site.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from bundler.errors import UnreachableError, UsageError


def _seconds(variable: str, default: float) -> float:
    try:
        return max(1.0, float(os.environ.get(variable, default)))
    except ValueError:
        raise UsageError(f"{variable} must be a number of seconds") from None


def remote_timeout() -> float:
    return _seconds("BUNDLER_REMOTE_TIMEOUT", 3600.0)


def local_timeout() -> float:
    return _seconds("BUNDLER_TOOL_TIMEOUT", 600.0)


class ToolTimeout(UnreachableError):
    """A program did not finish within its time (a source that does not answer); it was killed."""


def find(name: str, package: str, purpose: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise UsageError(f"{name} is needed {purpose}", hint=f"apt-get install {package}")
    return path


def run(argv: Sequence[str | Path], *, timeout: float | None = None, cwd: Path | None = None,
        input: bytes | None = None, env: Mapping[str, str] | None = None,
        inherit: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run to completion (the caller judges the exit code); raise ToolTimeout once `timeout`
    seconds (default: local_timeout()) pass, after killing the program's whole process group.
    `env` adds to our environment, or with `inherit=False` is the whole of it."""
    limit = local_timeout() if timeout is None else timeout
    name = Path(str(argv[0])).name
    proc = subprocess.Popen([str(a) for a in argv], cwd=cwd, env={**(os.environ if inherit else {}), **(env or {})},
                            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(input, timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise ToolTimeout(f"{name} did not finish within {limit:.0f} s and was stopped: "
                          f"{' '.join(str(a) for a in argv[1:3])}",
                          hint="a source that does not answer, or waits for a password or a host key "
                               "confirmation (bundler never prompts: use a credential helper or ssh-agent, "
                               "and a known_hosts entry)") from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def last_words(proc: subprocess.CompletedProcess[bytes], limit: int = 300) -> str:
    """The end of a program's error output, for a message."""
    return proc.stderr.decode(errors="replace").strip()[-limit:] or f"exit {proc.returncode}"
