"""`bundler inspect`, `bundler verify`, `bundler sign`, `bundler diff`: what a bundle holds, whether it
holds, a countersignature, and what changed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from bundler.bundle.reader import BundleReader, rebuilt_note
from bundler.bundle.sign import add_signature
from bundler.bundle.verify import unreadable_report, verify_file
from bundler.errors import EXIT_REFUSED, IntegrityError, UsageError
from bundler.keyfiles import load_policy, load_signing_key, load_trusted_key
from bundler.pipeline.diff import diff_bundles
from bundler.pipeline.inspect import inspect_bundle, sbom_bytes
from bundler.pipeline.verify import verify_for_site
from bundler.progress import report_as_json
from bundler.units import emit_json, human, printable


@click.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--manifest", "raw_manifest", is_flag=True,
              help="print the exact bundle.json (a parent for `build --since`, small enough to mail)")
@click.option("--sbom", is_flag=True,
              help="print the bundle's CycloneDX SBOM (sbom.cdx.json), checked against bundle.json")
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a public key you know, to name signers by its file name (repeatable; `verify` checks them)")
def inspect(bundle: Path, as_json: bool, raw_manifest: bool, sbom: bool, keys: tuple[Path, ...]) -> None:
    """Show what BUNDLE holds (from its manifest; use `verify` to check the bytes): images, charts,
    Git refs, updates, artifacts, the parent of a delta and what it requires, created, expires, signers.

    \b
    Examples:
      bundler inspect demo-1.0.0.bundle.tar --key release.pub --key security.pub
      bundler inspect demo-1.0.0.bundle.tar --json
      bundler inspect demo-1.0.0.bundle.tar --manifest > demo-1.0.0.json
      bundler inspect demo-1.0.0.bundle.tar --sbom > demo-1.0.0.cdx.json
    """
    if raw_manifest or sbom:

        with BundleReader(bundle) as reader:
            data = sbom_bytes(reader) if sbom else reader.manifest_bytes()
        if sys.stdout.isatty():  # a person reads it: every character from the bundle escaped
            try:
                data = (json.dumps(json.loads(data), indent=2, ensure_ascii=True) + "\n").encode()
            except (ValueError, RecursionError):
                data = (printable(data.decode("utf-8", "replace")) + "\n").encode()
        sys.stdout.buffer.write(data)  # a file or a pipe: the exact bytes (a parent, a digest to check)
        return

    known = {k.keyid: k.name for k in map(load_trusted_key, keys)}
    info = inspect_bundle(bundle, known)
    if as_json:
        emit_json(info.to_dict())
        return
    p = printable
    click.echo(f"{p(info.name)} {p(info.version)}  created {p(info.created)}  "
               f"expires {p(info.expires or 'never')}  {human(info.size)}")
    click.echo(f"manifest digest {info.manifest_digest}\ncontent digest  {info.content_digest}")
    if info.parent:
        parent = info.parent
        base = (f"what site {p(parent.get('receipt'))} held" if "receipt" in parent
                else f"{p(parent.get('name'))} {p(parent.get('version'))}")
        click.echo(f"a delta: builds on {base}; requires {info.required_files} files "
                   f"({human(info.required_bytes)}) the site must hold")
    names = [f"{n} ({k[:12]})" if (n := info.signer_names.get(k)) else k for k in info.signers]
    click.echo(f"signers (`verify` checks them): {', '.join(p(n) for n in names) or 'none (unsigned)'}")
    for line in info.lines():
        click.echo(line)


@click.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a trusted public key (repeatable)")
@click.option("--threshold", type=click.IntRange(1), help="how many distinct trusted keys must have signed (default 1)")
@click.option("--site", "site_dir", type=click.Path(file_okay=False, path_type=Path),
              help="use this site's trust policy instead of --key")
@click.option("--json", "as_json", is_flag=True,
              help="print the report as JSON (and progress as JSON lines on stderr)")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel hashing")
def verify(bundle: Path, keys: tuple[Path, ...], threshold: int | None, site_dir: Path | None, as_json: bool,
           jobs: int) -> None:
    """Check BUNDLE against a trust policy, exactly, and report.

    Passes only when at least THRESHOLD distinct trusted keys signed the exact bytes of its
    bundle.json, it has not expired, every listed file is present with its size and sha256, and
    nothing else is in it (no unlisted file, link, device, absolute or .. path, duplicate).
    With --site, also whether that site would refuse it (a rollback, a tag another release set, a
    delta whose base it lacks). Exits 3 otherwise, naming each problem with its code
    (--json: problems as {code, subject, expected, actual, message}; codes in docs/security-reviewer.md).

    \b
    Examples:
      bundler verify demo-1.0.0.bundle.tar --key release.pub
      bundler verify demo-1.0.0.bundle.tar --key release.pub --key security.pub --threshold 2 --json
      bundler verify demo-1.0.0.bundle.tar --site ./site
    """
    if as_json:
        report_as_json()
    if site_dir is not None and (keys or threshold):
        raise UsageError("give either --site or --key/--threshold, not both")
    if site_dir is None and not keys:
        raise UsageError("verify needs a trust policy: --key PUB (repeatable, with --threshold K) or --site DIR",
                         hint="`bundler inspect` shows what a bundle holds without judging it")
    try:
        if site_dir is not None:
            report = verify_for_site(bundle, site_dir, jobs)
        else:
            report = verify_file(bundle, load_policy(keys, threshold), jobs)
    except IntegrityError as exc:  # not even readable: a script still gets a report with a typed problem
        if not as_json:
            raise
        emit_json(unreadable_report(bundle, exc, threshold or 1))
        sys.exit(EXIT_REFUSED)
    if as_json:
        emit_json(report.to_dict())
    else:
        m = report.manifest
        click.echo(f"{printable(m.name)} {printable(m.version)}  created {printable(m.created)}  "
                   f"expires {printable(m.expires or 'never')}")
        click.echo(f"manifest digest {report.manifest_digest}; {len(m.files)} files, "
                   f"{human(sum(f.size for f in m.files.values()))}")
        for s in report.verdict.signers:
            state = "valid" if s.valid else ("INVALID" if s.name is not None else "not trusted")
            click.echo(f"signer {s.name or '(unknown)'} {s.keyid[:12]}: {state}")
        click.echo(f"threshold {report.verdict.threshold}: {'met' if report.verdict.met else 'NOT met'}")
        for problem in report.problems:
            click.echo(f"problem: {printable(problem.message)} [{problem.code}]", err=True)
        if report.rebuilt_parts:
            click.echo(rebuilt_note(report.rebuilt_parts))
        if report.verified:
            click.echo("verified")
    if not report.verified:
        if not as_json:
            count = len(report.problems)
            click.echo(f"error: {bundle} failed verification ({count} problem{'s' if count > 1 else ''})", err=True)
        sys.exit(EXIT_REFUSED)


@click.command()
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def diff(old: Path, new: Path, as_json: bool) -> None:
    """What changed from bundle OLD to NEW (bundle files or their manifests).

    \b
    Example:
      bundler diff store-1.4.0.bundle.tar store-1.5.0.bundle.tar
    """
    d = diff_bundles(old, new)
    if as_json:
        emit_json(d.to_dict())
        return
    click.echo(f"{d.old.name} {d.old.version} -> {d.new.name} {d.new.version}")
    for line in d.lines():
        click.echo(line)
    click.echo(f"content {human(d.old_bytes)} -> {human(d.new_bytes)}; new content {human(d.new_content)}")


@click.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="private key to sign with; password from BUNDLER_KEY_PASSWORD")
@click.option("--check-key", "check_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="public key of a signer already on the bundle (repeatable): with these, every existing "
                   "signature must be by one of them and valid")
def sign(bundle: Path, key: Path, check_keys: tuple[Path, ...]) -> None:
    """Add a signature (a countersignature) to BUNDLE in place.

    Signs the exact bytes of its bundle.json, after checking the bundle's structure and every
    payload's digest (a countersignature vouches for content; a bundle that fails is not signed).
    The payloads are not rewritten. A split bundle is signed by its .parts.json or any part: only
    its last part changes. A key signs a bundle once.

    \b
    Example:
      bundler sign demo-1.0.0.bundle.tar --key security.key --check-key release.pub
    """
    keyid = add_signature(bundle, load_signing_key(key), check_keys=tuple(map(load_trusted_key, check_keys)))
    if not check_keys:
        click.echo("note: the signatures already on it were not checked (give their keys with --check-key)",
                   err=True)
    click.echo(f"signed {bundle} with key {keyid}")
