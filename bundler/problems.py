"""Why a bundle is refused, as data: a stable code for programs (`verify --json`), the subject it
is about (a file in the bundle, an image, a key, a tag), what was expected and what was found, and
the sentence a person reads. The codes are listed in docs/security-reviewer.md ("Problem codes")."""

from __future__ import annotations

from dataclasses import dataclass

from bundler.errors import IntegrityError
from bundler.jsontypes import Doc
from bundler.units import printable

# signatures and policy
UNSIGNED = "unsigned"
SIGNATURE_INVALID = "signature-invalid"
THRESHOLD_NOT_MET = "threshold-not-met"
SIGNER_UNKNOWN = "signer-unknown"  # sign --check-key: a signature by a key not given
EXPIRED = "expired"
POLICY = frozenset({UNSIGNED, SIGNATURE_INVALID, THRESHOLD_NOT_MET})
# what the site runs
ROLLBACK = "rollback"
SAME_VERSION_OTHER_CONTENT = "same-version-other-content"
TAG_CLAIMED = "tag-claimed"
NAME_OWNED = "name-owned"  # a name on the site (a download by file name) another bundle name owns
TARGET_SHARED = "target-shared"  # two source registries would land on one path of the site's registry (rewrite rules)
# the tar's structure against bundle.json
UNREADABLE = "unreadable"  # bundle.json, signatures.json or the tar itself cannot be read as what it must be
UNSAFE_PATH = "unsafe-path"
NOT_A_FILE = "not-a-file"
DUPLICATE_MEMBER = "duplicate-member"
MISSING = "missing"
SIZE_MISMATCH = "size-mismatch"
MISNAMED_BLOB = "misnamed-blob"
UNLISTED = "unlisted"
# payloads and graphs
DIGEST_MISMATCH = "digest-mismatch"
GRAPH_INCOMPLETE = "graph-incomplete"
GRAPH_INVALID = "graph-invalid"
GIT_HEADER = "git-header"
GIT_UNREADABLE = "git-unreadable"
GIT_MISSING_BASE = "git-missing-base"
IMAGE_UNSIGNED = "image-unsigned"  # the site's image keys: no valid cosign signature
SUBJECT_NOT_CARRIED = "subject-not-carried"  # a signature, attestation, SBOM or referrer for an image not carried
# split bundles
PART_DAMAGED = "part-damaged"
PART_INDEX_MISMATCH = "part-index-mismatch"


@dataclass(frozen=True)
class Problem:
    """One finding of a check: its code, what it is about, a message, and what was expected and found."""
    code: str
    subject: str
    message: str
    expected: str | None = None
    actual: str | None = None
    hint: str | None = None  # what to do, when this problem alone decides it

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> Doc:
        return {"code": self.code, "subject": self.subject, "expected": self.expected, "actual": self.actual,
                "message": self.message}


def name_owned(subject: str, what: str, owner: str, name: str, version: str, would: str, why: str,
               site_dir: object) -> Problem:
    """A name on the site (`subject`, as `site hand-over` takes it) another bundle name owns."""
    return Problem(NAME_OWNED, subject, f"refused: {printable(what)} belongs to {printable(owner)}; this bundle "
                   f"({printable(name)} {printable(version)}) would {would}", owner, name,
                   hint=f"{why}; a deliberate hand-over: `bundler site hand-over {site_dir} {printable(subject)} "
                        f"--to {printable(name)}`")


class ProblemError(IntegrityError):
    """A refusal found while bytes were read (a payload as it streams, a manifest as it is parsed):
    it carries its Problem, so the report it ends in is typed without reading the message."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message, hint=problem.hint)
        self.problem = problem
