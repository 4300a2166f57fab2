"""Semantic versions (semver.org 2.0.0): validation and precedence, for rollback protection; the
looser versions charts carry in the wild, read as Helm (Masterminds semver) reads them; and package
versions in the orders their clients use (dpkg's, python-debian; rpm's rpmvercmp)."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from functools import total_ordering
from typing import Any

from debian import debian_support

SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)


@total_ordering
class Version:
    """Ordered by semver precedence: build metadata is ignored, a pre-release sorts before its release."""

    def __init__(self, text: str) -> None:
        match = SEMVER_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a semantic version")
        self.text = text
        self.core = (int(match[1]), int(match[2]), int(match[3]))
        self.pre = tuple(match[4].split(".")) if match[4] else ()

    def _key(self) -> tuple[tuple[int, int, int], int, tuple[tuple[int, int, str], ...]]:
        pre = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in self.pre)
        return self.core, 0 if self.pre else 1, pre

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Version) and self._key() == other._key()

    def __lt__(self, other: Version) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        return self.text

    @classmethod
    def helm(cls, text: str) -> Version:
        """A chart version as Helm accepts it: an optional `v`, one to three numbers (`1.2` is 1.2.0),
        a pre-release and build metadata (`v1.14.4`, `1.2`, `2.0.0-rc.1`). `str()` keeps the text as
        published (it is the chart's tag); order and equality are semver's. ValueError otherwise."""
        match = _HELM_RE.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a version Helm can read")
        major, minor, patch, pre, build = match.groups()
        version = cls(f"{int(major)}.{int(minor or 0)}.{int(patch or 0)}" + (f"-{pre}" if pre else "")
                      + (f"+{build}" if build else ""))
        version.text = text
        return version


_IDENT = r"[0-9A-Za-z-]+"
_HELM_RE = re.compile(
    rf"^v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-({_IDENT}(?:\.{_IDENT})*))?(?:\+({_IDENT}(?:\.{_IDENT})*))?$")
_PARTIAL_RE = re.compile(
    r"^v?(\d+|[xX*])(?:\.(\d+|[xX*]))?(?:\.(\d+|[xX*]))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")
_COMPARATOR_RE = re.compile(r"^(>=|<=|!=|=>|=<|>|<|=|~>|~|\^)?\s*(.+)$")


class VersionRange:
    """A constraint as Helm (Masterminds semver) writes them: `>=18.0.0 <19.0.0`, `18.x`, `~1.2`,
    `^2.1.0`, `1.2.3`, `1.2 - 1.4`, alternatives joined by `||`, comparators by spaces or commas.
    Pre-releases match only when the constraint itself names one."""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        if not self.text:
            raise ValueError("an empty version range")
        self._alternatives = [self._parse_and(part) for part in self.text.split("||")]
        self._allows_pre = "-" in re.sub(r"\s-\s", " ", self.text)

    @staticmethod
    def _parse_and(text: str) -> list[tuple[str, Version]]:
        text = re.sub(r"\s+-\s+", " - ", text.strip())
        tokens = [t for t in re.split(r"[\s,]+", text) if t]
        out: list[tuple[str, Version]] = []
        i = 0
        while i < len(tokens):
            if i + 2 < len(tokens) and tokens[i + 1] == "-":  # hyphen range: a - b
                low, high = _partial(tokens[i]), _partial(tokens[i + 2])
                out.append((">=", _floor(low)))
                out += _upper_inclusive(high)
                i += 3
                continue
            match = _COMPARATOR_RE.match(tokens[i])
            if match is None:
                raise ValueError(f"cannot read {tokens[i]!r}")
            op, partial = match[1] or "=", _partial(match[2])
            out += _expand({"=>": ">=", "=<": "<=", "~>": "~"}.get(op, op), partial)
            i += 1
        if not out:
            raise ValueError(f"cannot read {text!r}")
        return out

    def matches(self, version: Version) -> bool:
        if version.pre and not self._allows_pre:
            return False
        return any(all(_compare(version, op, bound) for op, bound in alt) for alt in self._alternatives)

    def best(self, versions: list[Version]) -> Version | None:
        matching = [v for v in versions if self.matches(v)]
        return max(matching) if matching else None

    def __str__(self) -> str:
        return self.text


Partial = tuple[int | None, int | None, int | None, str | None]


def _partial(text: str) -> Partial:
    match = _PARTIAL_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a version")
    nums = [None if p is None or p in "xX*" else int(p) for p in (match[1], match[2], match[3])]
    for i in range(1, 3):  # anything after a wildcard is a wildcard
        if nums[i - 1] is None:
            nums[i] = None
    return nums[0], nums[1], nums[2], match[4]


def _floor(p: Partial) -> Version:
    major, minor, patch, pre = p
    text = f"{major or 0}.{minor or 0}.{patch or 0}" + (f"-{pre}" if pre else "")
    return Version(text)


def _bump(p: Partial) -> Version:
    """The first version past a partial: 1 -> 2.0.0, 1.2 -> 1.3.0."""
    major, minor, _, _ = p
    if minor is None:
        return Version(f"{(major or 0) + 1}.0.0-0")
    return Version(f"{major}.{minor + 1}.0-0")


def _upper_inclusive(p: Partial) -> list[tuple[str, Version]]:
    if p[2] is None and p[0] is not None:
        return [("<", _bump(p))]
    return [("<=", _floor(p))] if p[0] is not None else []


def _expand(op: str, p: Partial) -> list[tuple[str, Version]]:
    major, minor, patch, _ = p
    exact = patch is not None
    if major is None:  # * or x: anything
        return [(">=", Version("0.0.0-0"))]
    if op == "=":
        return [("=", _floor(p))] if exact else [(">=", _floor(p)), ("<", _bump(p))]
    if op == "!=":
        return [("!=", _floor(p))]
    if op == "~":
        return [(">=", _floor(p)), ("<", _bump((major, minor if minor is not None else None, None, None)))]
    if op == "^":
        if major > 0 or minor is None:
            return [(">=", _floor(p)), ("<", Version(f"{major + 1}.0.0-0"))]
        if minor > 0 or patch is None:
            return [(">=", _floor(p)), ("<", Version(f"0.{minor + 1}.0-0"))]
        return [(">=", _floor(p)), ("<", Version(f"0.0.{patch + 1}-0"))]
    if op in (">", "<="):
        if exact:
            return [(op, _floor(p))]
        return [(">=" if op == ">" else "<", _bump(p))]
    return [(op, _floor(p))]  # >= and <: a partial means its floor


def _compare(version: Version, op: str, bound: Version) -> bool:
    if op == "=":
        return version == bound
    if op == "!=":
        return version != bound
    if op == ">":
        return version > bound
    if op == ">=":
        return version >= bound
    if op == "<":
        return version < bound
    return version <= bound


# --- package versions, in the orders their clients use ---------------------------------------------


def deb_compare(a: str, b: str) -> int:
    """dpkg's order (epoch, upstream version, revision; `~` sorts before everything, even the end)."""
    return int(debian_support.version_compare(a, b))


def _rpm_segments(text: str) -> Iterator[str]:
    """rpmvercmp's view of a version: separators `~` and `^` kept, runs of letters or digits."""
    for match in re.finditer(r"[~^]|[0-9]+|[A-Za-z]+", text):
        yield match.group()


def rpmvercmp(a: str, b: str) -> int:
    """rpm's rpmvercmp (rpm 4.18, rpmio/rpmvercmp.c): digits against digits by value, letters by
    byte order, digits newer than letters, `~` older than anything (even the end), `^` newer than
    the end but older than anything else."""
    if a == b:
        return 0
    one, two = list(_rpm_segments(a)), list(_rpm_segments(b))
    i = j = 0
    while i < len(one) or j < len(two):
        x = one[i] if i < len(one) else ""
        y = two[j] if j < len(two) else ""
        if x == "~" or y == "~":
            if x != "~":
                return 1
            if y != "~":
                return -1
            i, j = i + 1, j + 1
            continue
        if x == "^" or y == "^":
            if not x:
                return -1
            if not y:
                return 1
            if x != "^":
                return 1
            if y != "^":
                return -1
            i, j = i + 1, j + 1
            continue
        if not (x and y):
            break
        if x[0].isdigit() != y[0].isdigit():  # a number is newer than letters
            return 1 if x[0].isdigit() else -1
        if x[0].isdigit():
            x, y = x.lstrip("0"), y.lstrip("0")
            if len(x) != len(y):
                return 1 if len(x) > len(y) else -1
        if x != y:
            return 1 if x > y else -1
        i, j = i + 1, j + 1
    if i >= len(one) and j >= len(two):
        return 0
    return -1 if i >= len(one) else 1


def _evr(text: str) -> tuple[int, str, str | None]:
    epoch, colon, rest = text.partition(":")
    if not colon or not epoch.isdigit():
        epoch, rest = "0", text
    version, dash, release = rest.rpartition("-")
    return (int(epoch), version, release) if dash else (int(epoch), rest, None)


def rpm_compare(a: str, b: str) -> int:
    """rpm's order of `[epoch:]version[-release]` (as rpm.vercmp): epoch by value, then version, then
    release, each by rpmvercmp; no release at all is older than any release."""
    (ea, va, ra), (eb, vb, rb) = _evr(a), _evr(b)
    if ea != eb:
        return 1 if ea > eb else -1
    if found := rpmvercmp(va, vb):
        return found
    if ra is None or rb is None:
        return 0 if ra is rb else -1 if ra is None else 1
    return rpmvercmp(ra, rb)


def package_version_key(kind: str) -> Callable[[str], Any]:
    """A sort key for versions of one kind of update: rpm's order for rpm, dpkg's for everything else
    (a .deb, and files whose version follows the same conventions: `~rc1` before the release)."""
    return functools.cmp_to_key(rpm_compare if kind == "rpm" else deb_compare)
