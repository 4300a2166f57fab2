"""Keyless signatures judged offline (bundler/kinds/images/keyless.py) against the tests' own Sigstore
instance (tests/sigstore_lab.py): the right identity holds and says who signed against which root;
each wrong part is refused, saying why."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bundler.kinds.images.attest import DSSE_LAYER
from bundler.kinds.images.keyless import Identity, KeylessRefused, Root, judge
from bundler.kinds.images.tagscheme import SIMPLE_SIGNING, judge_tag_scheme, judge_tag_scheme_attestations
from bundler.oci import media
from tests.sigstore_lab import GITHUB, SLSA_PROVENANCE, WORKFLOW, Fault, Instance, write_root

DIGEST = "sha256:" + "ab" * 32
ACME = Identity(GITHUB, r"https://github\.com/acme/[^/]+/\.github/workflows/release\.yml@refs/heads/main")


@pytest.fixture(scope="module")
def lab() -> Instance:
    return Instance()


@pytest.fixture(scope="module")
def root(lab: Instance, tmp_path_factory: pytest.TempPathFactory) -> Root:
    return Root.load(write_root(lab, tmp_path_factory.mktemp("root") / "trusted_root.json"))


def test_the_right_identity_holds_and_says_who_signed_against_which_root(lab: Instance, root: Root) -> None:
    judged = judge(lab.attest(DIGEST), DIGEST, [ACME], root)
    assert (judged.issuer, judged.subject) == (GITHUB, WORKFLOW)
    assert judged.root == root.digest and judged.root.startswith("sha256:")
    other = Identity("https://accounts.google.com", ".*")  # any of the rule's identities will do
    assert judge(lab.attest(DIGEST), DIGEST, [other, ACME], root).subject == WORKFLOW


@pytest.mark.parametrize(("made", "reason"), [
    ({"issuer": "https://accounts.google.com"}, "signed by https://accounts.google.com"),
    ({"subject": "https://github.com/evil/pos/.github/workflows/release.yml@refs/heads/main"}, "evil/pos"),
    ({"subject": "https://github.com/acme/pos/.github/workflows/release.yml@refs/heads/main-x"}, "does not name"),
    ({"fault": Fault(expired_at_signing=True)}, "not valid at validation time"),
    ({"fault": Fault(no_proof=True)}, "inclusionProof"),
    ({"fault": Fault(proof_of_other_entry=True)}, "invalid root hash"),
    ({"fault": Fault(foreign_log_key=True)}, "checkpoint: invalid signature"),
    ({"fault": Fault(subject_digest="sha256:" + "cd" * 32)}, "it is about sha256:cdcdcdcdcdcd, not this image"),
    ({"predicate_type": SLSA_PROVENANCE}, "it states https://slsa.dev/provenance/v1, not"),
], ids=["wrong-issuer", "wrong-subject", "subject-not-whole", "expired-at-signing", "no-log-proof",
        "proof-of-another-entry", "log-key-not-in-root", "payload-for-another-digest",
        "an-attestation-not-a-signature"])
def test_a_keyless_signature_that_does_not_hold_is_refused_saying_why(lab: Instance, root: Root,
                                                                      made: dict[str, object], reason: str) -> None:
    bundle = lab.attest(DIGEST, **made)  # type: ignore[arg-type]
    with pytest.raises(KeylessRefused) as refused:
        judge(bundle, DIGEST, [ACME], root)
    assert reason in str(refused.value), str(refused.value)


def test_a_root_that_does_not_name_the_log_refuses_what_it_logged(lab: Instance, tmp_path: Path) -> None:
    other = (tmp_path / "root.json")
    other.write_bytes(lab.trusted_root(log_keys=[ec.generate_private_key(ec.SECP256R1()).public_key()]))
    with pytest.raises(KeylessRefused, match="invalid log entry"):
        judge(lab.attest(DIGEST), DIGEST, [ACME], Root.load(other))


def test_a_file_that_is_not_a_trusted_root_is_refused_naming_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(KeylessRefused, match=r"mediaType|media_type|trusted root"):
        Root.parse(b'{"mediaType": "application/json"}')
    with pytest.raises(KeylessRefused):
        Root.parse(b"not json")


def sig_manifest(payload: bytes, notes: dict[str, str],
                 layer_type: str = SIMPLE_SIGNING) -> tuple[str, dict[str, bytes]]:
    """cosign's `.sig` (or `.att`) manifest with one layer; (its digest, every blob by digest)."""
    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    config = b"{}"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                           "config": {"mediaType": media.OCI_CONFIG, "digest": digest(config), "size": 2},
                           "layers": [{"mediaType": layer_type, "digest": digest(payload), "size": len(payload),
                                       "annotations": notes}]}).encode()
    return digest(manifest), {digest(b): b for b in (config, payload, manifest)}


def test_cosign_v2s_keyless_tag_scheme_holds_for_the_right_identity(lab: Instance, root: Root) -> None:
    manifest, blobs = sig_manifest(*lab.sign_tag_scheme(DIGEST))
    judged = judge_tag_scheme(blobs.__getitem__, manifest, DIGEST, [ACME], root)
    assert (judged.issuer, judged.subject, judged.root) == (GITHUB, WORKFLOW, root.digest)


@pytest.mark.parametrize(("made", "reason"), [
    ({"issuer": "https://accounts.google.com"}, "signed by https://accounts.google.com"),
    ({"subject": "https://github.com/evil/pos/.github/workflows/release.yml@refs/heads/main"}, "evil/pos"),
    ({"fault": Fault(expired_at_signing=True)}, "does not chain to the trusted root at the log's time"),
    ({"fault": Fault(no_proof=True)}, "no log proof"),
    ({"fault": Fault(proof_of_other_entry=True)}, "its log entry is another signature's"),
    ({"fault": Fault(foreign_log_key=True)}, "is not one the trusted root names"),
    ({"fault": Fault(subject_digest="sha256:" + "cd" * 32)}, "it is about sha256:cdcdcdcdcdcd"),
], ids=["wrong-issuer", "wrong-subject", "expired-at-signing", "no-log-proof", "entry-of-another-signature",
        "log-key-not-in-root", "payload-for-another-digest"])
def test_a_tag_scheme_keyless_signature_that_does_not_hold_is_refused_saying_why(
        lab: Instance, root: Root, made: dict[str, object], reason: str) -> None:
    manifest, blobs = sig_manifest(*lab.sign_tag_scheme(DIGEST, **made))  # type: ignore[arg-type]
    with pytest.raises(KeylessRefused) as refused:
        judge_tag_scheme(blobs.__getitem__, manifest, DIGEST, [ACME], root)
    assert reason in str(refused.value), str(refused.value)


PROVENANCE = {"runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}


def test_cosign_v2s_keyless_attestations_in_the_tag_scheme_hold_and_say_what_they_state(lab: Instance,
                                                                                        root: Root) -> None:
    manifest, blobs = sig_manifest(*lab.attest_tag_scheme(DIGEST, SLSA_PROVENANCE, PROVENANCE), DSSE_LAYER)
    [judged], failed = judge_tag_scheme_attestations(blobs.__getitem__, manifest, DIGEST, [ACME], root,
                                                     SLSA_PROVENANCE)
    assert failed == [] and judged.predicate == PROVENANCE and judged.subject == WORKFLOW
    assert judge_tag_scheme_attestations(blobs.__getitem__, manifest, DIGEST, [ACME], root, "https://other/v1") \
        == ([], [])  # another predicate type: not looked at


@pytest.mark.parametrize(("made", "reason"), [
    ({"subject": "https://github.com/evil/pos/.github/workflows/release.yml@refs/heads/main"}, "evil/pos"),
    ({"fault": Fault(no_proof=True)}, "no log proof"),
    ({"fault": Fault(proof_of_other_entry=True)}, "its log entry is another signature's"),
    ({"fault": Fault(foreign_log_key=True)}, "is not one the trusted root names"),
    ({"fault": Fault(subject_digest="sha256:" + "cd" * 32)}, "it is about sha256:cdcdcdcdcdcd"),
], ids=["wrong-subject", "no-log-proof", "entry-of-another-statement", "log-key-not-in-root", "another-image"])
def test_a_tag_scheme_keyless_attestation_that_does_not_hold_is_refused_saying_why(
        lab: Instance, root: Root, made: dict[str, object], reason: str) -> None:
    manifest, blobs = sig_manifest(*lab.attest_tag_scheme(DIGEST, SLSA_PROVENANCE, PROVENANCE, **made),  # type: ignore[arg-type]
                                   DSSE_LAYER)
    held, failed = judge_tag_scheme_attestations(blobs.__getitem__, manifest, DIGEST, [ACME], root, SLSA_PROVENANCE)
    assert held == [] and len(failed) == 1 and reason in failed[0], failed
