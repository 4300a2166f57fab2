from __future__ import annotations

import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bundler.versions import Version, VersionRange, deb_compare, package_version_key, rpm_compare

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


# --- package versions: the orders dpkg and rpm use, checked against the tools themselves -------------

_alnum = st.text(alphabet="0123456789abcz", min_size=1, max_size=4)
_deb_upstream = st.builds(lambda head, rest: head + rest, st.sampled_from("0123456789"),
                          st.text(alphabet="0123456789abz.+~", max_size=6))
debian_versions = st.builds(
    lambda epoch, upstream, revision: (f"{epoch}:" if epoch is not None else "") + upstream
    + (f"-{revision}" if revision else ""),
    st.one_of(st.none(), st.integers(0, 3)), _deb_upstream,
    st.one_of(st.just(""), st.text(alphabet="0123456789abz.+~", min_size=1, max_size=4)))
rpm_versions = st.builds(
    lambda epoch, version, release: (f"{epoch}:" if epoch is not None else "") + version
    + (f"-{release}" if release else ""),
    st.one_of(st.none(), st.integers(0, 3)),
    st.lists(st.one_of(_alnum, st.sampled_from(["~", "^", ".", "_", "+"])), min_size=1, max_size=6).map("".join),
    st.one_of(st.just(""), st.lists(st.one_of(_alnum, st.sampled_from(["~", "^", "."])), min_size=1,
                                    max_size=3).map("".join)))


def dpkg_says(a: str, b: str) -> int:
    for op, result in (("lt", -1), ("eq", 0)):
        if subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0:
            return result
    return 1


@settings(max_examples=150, deadline=None)
@given(debian_versions, debian_versions)
def test_debian_order_is_dpkgs(a: str, b: str) -> None:
    assert deb_compare(a, b) == dpkg_says(a, b)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(rpm_versions, rpm_versions), min_size=1, max_size=20))
def test_rpm_order_is_rpms(pairs: list[tuple[str, str]]) -> None:
    script = " ".join(f"print(rpm.vercmp('{a}', '{b}') .. ' ')" for a, b in pairs)  # rpm's own comparison
    out = subprocess.run(["rpm", "--eval", f"%{{lua: {script}}}"], capture_output=True, text=True, check=True).stdout
    said = [int(v) for v in out.split()]
    assert [rpm_compare(a, b) for a, b in pairs] == said


@pytest.mark.parametrize(("kind", "older", "newer"), [
    ("deb", "1.0~rc1", "1.0"), ("deb", "2.0", "1:1.0"), ("deb", "1.9", "1.10"), ("deb", "2.0-9", "2.0-10"),
    ("rpm", "1.0~rc1-1", "1.0-1"), ("rpm", "2.0-1", "1:1.0-1"), ("rpm", "1.0-1", "1.0^post1-1"),
    ("file", "1.0~beta", "1.0"),
])
def test_a_pre_release_and_an_epoch_sort_as_the_client_sorts_them(kind: str, older: str, newer: str) -> None:
    key = package_version_key(kind)
    assert max([newer, older], key=key) == newer and max([older, newer], key=key) == newer
