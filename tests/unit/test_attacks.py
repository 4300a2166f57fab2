"""Each attack bundle fails `verify` with its cause; the reader never writes anything while reading."""

from __future__ import annotations

import pytest

from bundler.bundle.reader import BundleReader
from bundler.bundle.verify import verify_bundle
from bundler.errors import BundlerError
from bundler.keyfiles import load_policy
from tests.attack_cases import ATTACKS, CASES, GOOD, KEYS, Attack, policy_keys


def test_every_attack_file_is_there() -> None:
    assert {f"{c.name}.bundle.tar" for c in CASES} | {GOOD.name} == {p.name for p in ATTACKS.glob("*.bundle.tar")}


def test_the_good_bundle_verifies() -> None:
    with BundleReader(GOOD) as reader:
        report = verify_bundle(reader, load_policy([KEYS / "release.pub"], 1))
    assert report.verified, report.problems


@pytest.mark.parametrize("attack", [c for c in CASES if not c.rollback], ids=str)
def test_verify_refuses_each_attack_naming_the_cause(attack: Attack) -> None:
    policy = load_policy(policy_keys(attack), 2 if attack.two_of_two else 1)
    try:
        with BundleReader(attack.path) as reader:
            problems = [str(p) for p in verify_bundle(reader, policy).problems]
    except BundlerError as exc:  # a bundle too broken to report on still fails as a refusal
        assert exc.exit_code == 3
        problems = [exc.message]
    assert any(attack.cause in p for p in problems), problems


def test_the_verifier_keeps_the_fail_closed_order() -> None:
    """Stages run in one order (policy, site, structure, payloads, graphs, git); a caller that tries
    another is stopped, and an import's `check()` refuses at the first stage with a problem."""
    from bundler.bundle.verify import Verification

    policy = load_policy([KEYS / "release.pub"], 1)
    with BundleReader(GOOD) as reader:
        verification = Verification(reader, policy).structure()
        for too_late in (lambda: verification.site(None), verification.structure):
            with pytest.raises(AssertionError, match="after structure"):
                too_late()
    with BundleReader(ATTACKS / "unsigned.bundle.tar") as reader:
        with pytest.raises(BundlerError, match="the bundle is unsigned") as refused:
            Verification(reader, policy).check("unsigned.bundle.tar").structure()
        assert refused.value.exit_code == 3
