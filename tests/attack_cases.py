"""The attack bundles under tests/assets/attacks and what each must be refused with.

Policies: `release` alone (threshold 1), or `release`+`security` with threshold 2 for the
below-threshold case. The site of the import tests first imports good-2.0.0 (release-signed), so
the two rollback cases are judged against a site that runs 2.0.0.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ASSETS = Path(__file__).parent / "assets"
ATTACKS = ASSETS / "attacks"
KEYS = ASSETS / "keys"
GOOD = ATTACKS / "good-2.0.0.bundle.tar"


@dataclass(frozen=True)
class Attack:
    name: str
    cause: str  # a phrase the refusal must contain
    two_of_two: bool = False  # judged by the release+security, threshold 2 policy
    rollback: bool = False  # only a site that runs good-2.0.0 refuses it

    @property
    def path(self) -> Path:
        return ATTACKS / f"{self.name}.bundle.tar"

    def __str__(self) -> str:
        return self.name


BLOB = "oci/blobs/sha256/"
CASES = [
    Attack("unsigned", "the bundle is unsigned"),
    Attack("untrusted-signer", "also signed by untrusted keys"),
    Attack("below-threshold", "1 valid signature(s) by trusted keys, the policy needs 2", two_of_two=True),
    Attack("signature-over-other-manifest", "the signature by release"),
    Attack("manifest-changed-after-signing", "does not match bundle.json"),
    Attack("payload-byte-flipped", ": sha256 is"),
    Attack("payload-truncated", "bundle.json says"),
    Attack("extra-member", "in the bundle but not listed in bundle.json"),
    Attack("path-traversal", "climbs out of the bundle"),
    Attack("absolute-path", "an absolute or malformed path"),
    Attack("symlink", "oci/symlink: a link"),
    Attack("hardlink", "oci/hardlink: a link"),
    Attack("device-node", "oci/device: a device"),
    Attack("duplicate-member", "appears twice"),
    Attack("expired", "the bundle expired at"),
    Attack("rollback-older-version", "rollback refused", rollback=True),
    Attack("same-version-different-content", "same version with different content", rollback=True),
    Attack("other-name-same-tag", "tag example.test/attack/v2:1 was set by attack 2.0.0", rollback=True),
    # validly signed, so the parser alone must refuse them (a leaked key, a buggy build)
    Attack("name-traversal-image", "images[0].ref: "),
    Attack("name-traversal-chart", "charts[0].name: '../x' is not a chart name"),
    Attack("name-traversal-repo", "repos[0].name: '../x' is not a repository name"),
    Attack("name-traversal-artifact", "artifacts[0].files[0].title: '../../etc/cron.d/evil' is not a relative"),
    Attack("artifact-title-climbs-out", "'../../etc/cron.d/evil' is not a relative file name inside the artifact"),
    Attack("name-traversal-update", "updates[0].file: '../x' is not a plain file name"),
    Attack("type-confused-expires", "expires: expected a string, got a number"),
    Attack("type-confused-images", "images: expected an array, got a number"),
    Attack("type-confused-platforms", "images[0].platforms: expected an array, got a number"),
    Attack("type-confused-files", "files: expected an object, got an array"),
    Attack("deep-manifest", "bundle.json is not a valid bundle manifest: nested deeper than 32 levels"),
    Attack("deep-signatures", "signatures.json is malformed: nested deeper than 32 levels"),
    Attack("injected-control-stanza", "control text holds an empty line (a second stanza)"),
    Attack("directory-member", "a directory entry, not a file"),
    Attack("huge-pax-header", "a tar header claims 3000000000 bytes"),
]


def policy_keys(attack: Attack) -> list[Path]:
    return [KEYS / "release.pub", KEYS / "security.pub"] if attack.two_of_two else [KEYS / "release.pub"]


def forge_json_member(bundle: Path, out: Path, name: str, change: Callable[[Any], None]) -> Path:
    """A copy of `bundle` whose JSON member `name` (bundle.json, signatures.json) was edited in
    place by `change`, every other member byte for byte and in the same order: a forger's bundle."""
    with tarfile.open(bundle) as src, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == name:
                doc = json.loads(data)
                change(doc)
                data = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data))
    return out
