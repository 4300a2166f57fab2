from __future__ import annotations

import pytest

from bundler.versions import Version, VersionRange

ORDER = ["0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1",
         "1.0.0", "1.0.1", "1.10.0", "2.0.0"]


def test_precedence_follows_semver() -> None:
    versions = [Version(v) for v in ORDER]
    assert sorted(reversed(versions)) == versions
    assert Version("1.0.0+build.5") == Version("1.0.0")


AVAILABLE = ["17.0.0", "18.0.0", "18.1.3", "18.9.0", "19.0.0-rc.1", "19.0.0", "19.2.1", "0.2.5", "0.3.1"]
RANGES = [
    (">=18.0.0 <19.0.0", "18.9.0"),
    (">=18.0.0, <19.0.0", "18.9.0"),
    ("18.x", "18.9.0"),
    ("18", "18.9.0"),
    ("18.1.x", "18.1.3"),
    ("~18.1.0", "18.1.3"),
    ("^18.1.0", "18.9.0"),
    ("^0.2.0", "0.2.5"),
    ("18.1.3", "18.1.3"),
    ("=18.0.0", "18.0.0"),
    ("*", "19.2.1"),
    ("<18", "17.0.0"),
    (">18.1", "19.2.1"),
    ("<=18.1", "18.1.3"),
    ("17.0.0 - 18.1", "18.1.3"),
    ("17.x || 19.0.x", "19.0.0"),
    (">=19.0.0-rc.0 <19.0.0", "19.0.0-rc.1"),
    ("!=19.2.1 >=19", "19.0.0"),
    (">=20", None),
]


@pytest.mark.parametrize(("text", "expected"), RANGES)
def test_ranges_pick_the_highest_match(text: str, expected: str | None) -> None:
    best = VersionRange(text).best([Version(v) for v in AVAILABLE])
    assert (str(best) if best else None) == expected


@pytest.mark.parametrize("text", ["", ">=", "one.two", ">=1.2.3.4", "1.2.3 -"])
def test_bad_ranges(text: str) -> None:
    with pytest.raises(ValueError):
        VersionRange(text)


@pytest.mark.parametrize(("text", "size"), [("fat32", (4 << 30) - 1), ("4G", 4 << 30), ("500M", 500 << 20),
                                            ("64k", 64 << 10), ("1000", 1000)])
def test_split_sizes(text: str, size: int) -> None:
    from bundler.bundle.parts import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "4T", "-1G", "four gigabytes"])
def test_bad_split_sizes(text: str) -> None:
    from bundler.bundle.parts import parse_size
    from bundler.errors import UsageError

    with pytest.raises(UsageError):
        parse_size(text)


@pytest.mark.parametrize(("text", "same_as"), [
    ("v1.14.4", "1.14.4"), ("1.2", "1.2.0"), ("1", "1.0.0"), ("v2", "2.0.0"), ("2.0.0-rc.1", "2.0.0-rc.1"),
    ("v1.2.3+build.5", "1.2.3"), ("01.2.3", "1.2.3"),
])
def test_chart_versions_read_as_helm_reads_them(text: str, same_as: str) -> None:
    version = Version.helm(text)
    assert version == Version(same_as) and str(version) == text  # the text stays: it is the chart's tag


@pytest.mark.parametrize("text", ["", "latest", "1.2.3.4", "v", "1.x", "1..2", "1.2.3-", "1.2.3-rc.01", "vv1.2"])
def test_unreadable_chart_versions_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Version.helm(text)


def test_ranges_select_among_chart_versions_from_the_wild() -> None:
    versions = [Version.helm(t) for t in ["v1.14.4", "v1.14.3", "1.2", "2.0.0-rc.1", "v1.13.0"]]
    assert str(VersionRange("1.14.4").best(versions)) == "v1.14.4"
    assert str(VersionRange("v1.14.x").best(versions)) == "v1.14.4"
    assert str(VersionRange("~1.2").best(versions)) == "1.2"
    assert str(VersionRange("*").best(versions)) == "v1.14.4"  # a pre-release only when the range names one
    assert str(VersionRange(">=2.0.0-rc.0").best(versions)) == "2.0.0-rc.1"
