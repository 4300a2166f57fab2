"""`bundler init PROFILE`: a commented profile to start from, each registered kind's `spec` section
with an example (Kind.example), checked by the profile parser before it is written."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from bundler.errors import UsageError
from bundler.kinds import KINDS
from bundler.profile import parse_profile

HEADER = """\
# A bundler profile: what `bundler build {file}` collects into one signed bundle.
# Every key is in the profile reference (docs/reference.md); unknown keys are errors
# with file:line; `bundler inspect` shows what a built bundle carries.
apiVersion: bundler/v1
kind: Profile
metadata:
{name_line}# lowercase letters, digits, . _ - (names the bundle file)
  version: 0.1.0                                  # a semantic version: sites refuse to go back to an older one
  description: what this release carries
  # expires: 90d                                  # sites refuse the bundle after created + this
spec:
  # registries:                                   # how to reach source registries that need credentials
  #   - host: registry.example.com
  #     usernameEnv: REGISTRY_USER                # named by environment variable, never written here
  #     passwordEnv: REGISTRY_PASSWORD
"""


def profile_text(path: Path, kinds: Sequence[str]) -> str:
    """The profile `bundler init` writes for these kinds (all that have an example when empty)."""
    known = {kind.key: kind for kind in KINDS if kind.build.example}
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise UsageError(f"--kind {', '.join(unknown)}: no such kind", hint=f"the kinds: {', '.join(known)}")
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.name.split(".")[0].lower()).strip("._-")
    text = HEADER.format(file=path.name, name_line=f"  name: {name or 'my-release'}".ljust(50))
    text += "".join(known[key].build.example for key in (kinds or list(known)))
    parse_profile(text, str(path), kinds=KINDS)  # what it writes validates as is
    return text


def write_profile(path: Path, kinds: Sequence[str]) -> Path:
    """Write the profile; an existing file is never replaced."""
    text = profile_text(path, kinds)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise UsageError(f"{path} exists; init never overwrites a profile", hint="give another file name") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path
