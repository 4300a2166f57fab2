"""The verbs on bundle files: keygen, build, sign, inspect, verify, import, diff."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from bundler.cli.root import JOBS_HELP, cli
from bundler.errors import EXIT_REFUSED, IntegrityError, UsageError
from bundler.progress import report_as_json
from bundler.units import emit_json, human, printable


@cli.command()
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="bundle file to write (default: NAME-VERSION.bundle.tar in the current directory)")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
@click.option("--key", "keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="private key to sign with (repeatable); password from BUNDLER_KEY_PASSWORD")
@click.option("--since", type=click.Path(dir_okay=False, path_type=Path),
              help="a delta: carry only what PARENT lacks (a bundle, its --manifest, or a site receipt)")
@click.option("--split-size", help="write parts of at most SIZE (4G, 500M, or fat32) and a .parts.json index")
@click.option("--for-fleet", "fleet_dir", type=click.Path(file_okay=False, path_type=Path),
              help="write the smallest set of deltas that brings every site of this fleet directory to the "
                   "release (one per distinct base, into -o DIRECTORY, default .)")
@click.option("--publish", "hub_url", metavar="oci://HOST/PATH",
              help="with --for-fleet: also publish each delta to this hub, tagged VERSION-for-SITE for each of its "
                   "sites (what `bundler fleet rollout start` looks for)")
@click.option("--hub-credentials", type=click.Path(dir_okay=False, path_type=Path),
              help="the hub account for --publish (JSON: username and password, or token)")
@click.option("--dry-run", "dry", is_flag=True,
              help="resolve every source (tags to digests, chart ranges, Git refs, files) and print what the "
                   "bundle would carry and its size; write nothing")
def build(profile: Path, output: Path | None, jobs: int, keys: tuple[Path, ...], since: Path | None,
          split_size: str | None, fleet_dir: Path | None, hub_url: str | None, hub_credentials: Path | None,
          dry: bool) -> None:
    """Collect what PROFILE names (images, charts, Git repositories, updates, artifacts) into one bundle file,
    signed with each --key.

    \b
    Example:
      bundler build profiles/demo.yaml --key release.key -o demo-1.0.0.bundle.tar
      bundler build profiles/demo.yaml --dry-run        # what it would carry, and its size
    """
    from bundler.bundle.parts import parse_size
    from bundler.pipeline.build import BuildOptions, build_bundle

    size = parse_size(split_size) if split_size else None
    if dry:
        from bundler.pipeline.build import dry_run

        if fleet_dir is not None:
            raise UsageError("--dry-run is for one bundle: `bundler fleet plan PROFILE` shows a fleet's")
        seen = dry_run(BuildOptions(profile, output, jobs, keys, since))
        for note in seen.notes:
            click.echo(note)
        delta = f", a delta on {since}" if since is not None else ""
        click.echo(f"would write {seen.output} ({human(seen.size)}, {seen.files} files): {seen.name} {seen.version}"
                   f"{delta}; nothing was written")
        for line in seen.lines:
            click.echo(line)
        return
    if hub_url is not None and fleet_dir is None:
        raise UsageError("--publish is for --for-fleet's deltas; a single bundle: bundler publish BUNDLE HUB")
    if fleet_dir is not None:
        from bundler.pipeline.fleet_plan import fleet_build

        done = fleet_build(BuildOptions(profile, None, jobs, keys, since, size), fleet_dir, output or Path.cwd(),
                           hub_url, hub_credentials)
        for item in done.built:
            click.echo(f"wrote {item.result.path} ({human(item.result.size)}) for {', '.join(item.sites)}")
            if done.hub is not None:
                click.echo(f"published {item.result.path.name} to {done.hub.host}/{done.hub.repository} as "
                           f"{', '.join(item.tags)}")
        if done.current:
            click.echo(f"already at this release: {', '.join(done.current)}")
        return
    result = build_bundle(BuildOptions(profile, output, jobs, keys, since, size))
    for note in result.notes:
        click.echo(note)
    from bundler.kinds import KINDS

    counts = "".join(f"{result.counts[k.key]} {k.title}, " for k in KINDS if result.counts[k.key] or k.always_reported)
    what = f"a bundle of {human(result.size)} in {result.parts} parts" if result.parts > 1 else human(result.size)
    delta = ""
    if since is not None and result.left_to_parent is not None:
        files, size = result.left_to_parent
        delta = f", a delta on {since} (leaves {files} files, {human(size)}, to it)"
    click.echo(f"wrote {result.path} ({what}): {result.name} {result.version}{delta}, "
               f"{counts}{result.blobs} unique blobs")
    click.echo(f"manifest digest {result.manifest_digest}")
    click.echo(f"signed by {', '.join(k[:12] for k in result.signers)}" if result.signers
               else "unsigned: sites refuse it until someone signs it (`bundler sign`)")


@cli.command("init")
@click.argument("profile", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--kind", "kinds", metavar="KIND[,KIND]...", default="",
              help="only these kinds' sections (images, charts, repos, updates, artifacts); default: all")
def init_profile(profile: Path, kinds: str) -> None:
    """Write a commented profile to start from: each kind's keys with an example.

    It validates as it is; change the sources to yours, then `bundler build PROFILE`. An existing
    file is never replaced.

    \b
    Example:
      bundler init store.yaml --kind images,repos,updates
    """
    from bundler.pipeline.scaffold import write_profile

    path = write_profile(profile, [k.strip() for k in kinds.split(",") if k.strip()])
    click.echo(f"wrote {path}: change its sources to yours, then `bundler build {path}`")


@cli.command()
@click.argument("prefix", type=click.Path(dir_okay=False, path_type=Path))
def keygen(prefix: Path) -> None:
    """Make an ECDSA P-256 key pair: PREFIX.key (private) and PREFIX.pub (public).

    The private key is encrypted when BUNDLER_KEY_PASSWORD is set. Existing files are never
    overwritten. The key id is the hex SHA-256 of the public key (DER).

    \b
    Example:
      BUNDLER_KEY_PASSWORD=... bundler keygen release
    """
    from bundler.keyfiles import keygen as make_keys

    key_path, pub_path, keyid = make_keys(prefix)
    click.echo(f"wrote {key_path} (keep it secret) and {pub_path}; key id {keyid}")


@cli.command()
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
    from bundler.bundle.sign import add_signature
    from bundler.keyfiles import load_signing_key, load_trusted_key

    keyid = add_signature(bundle, load_signing_key(key), check_keys=tuple(map(load_trusted_key, check_keys)))
    if not check_keys:
        click.echo("note: the signatures already on it were not checked (give their keys with --check-key)",
                   err=True)
    click.echo(f"signed {bundle} with key {keyid}")


@cli.command()
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
    from bundler.keyfiles import load_trusted_key
    from bundler.pipeline.inspect import inspect_bundle, inspect_text

    if raw_manifest or sbom:
        from bundler.bundle.reader import BundleReader
        from bundler.pipeline.inspect import sbom_bytes

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
        emit_json(info)
        return
    p = printable
    click.echo(f"{p(info['name'])} {p(info['version'])}  created {p(info['created'])}  "
               f"expires {p(info['expires'] or 'never')}  {human(info['size'])}")
    click.echo(f"manifest digest {info['manifest_digest']}\ncontent digest  {info['content_digest']}")
    if info["parent"]:
        parent = info["parent"]
        base = (f"what site {p(parent.get('receipt'))} held" if "receipt" in parent
                else f"{p(parent.get('name'))} {p(parent.get('version'))}")
        click.echo(f"a delta: builds on {base}; requires {info['requires']['files']} files "
                   f"({human(info['requires']['bytes'])}) the site must hold")
    names = [f"{n} ({k[:12]})" if (n := info["signer_names"].get(k)) else k for k in info["signers"]]
    click.echo(f"signers (`verify` checks them): {', '.join(p(n) for n in names) or 'none (unsigned)'}")
    for line in inspect_text(info):
        click.echo(line)


@cli.command()
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
    from bundler.bundle.verify import unreadable_report, verify_file
    from bundler.keyfiles import load_policy
    from bundler.pipeline.verify import verify_for_site

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
        info = report.to_dict()
        click.echo(f"{printable(info['name'])} {printable(info['version'])}  created {printable(info['created'])}  "
                   f"expires {printable(info['expires'] or 'never')}")
        click.echo(f"manifest digest {info['manifest_digest']}; {info['file_count']} files, "
                   f"{human(info['total_bytes'])}")
        for s in info["signers"]:
            state = "valid" if s["valid"] else ("INVALID" if s["trusted"] else "not trusted")
            click.echo(f"signer {s['name'] or '(unknown)'} {s['keyid'][:12]}: {state}")
        met = "met" if info["threshold_met"] else "NOT met"
        click.echo(f"threshold {info['threshold']}: {met}")
        for problem in report.problems:
            click.echo(f"problem: {printable(problem.message)} [{problem.code}]", err=True)
        if report.verified:
            click.echo("verified")
    if not report.verified:
        if not as_json:
            count = len(report.problems)
            click.echo(f"error: {bundle} failed verification ({count} problem{'s' if count > 1 else ''})", err=True)
        sys.exit(EXIT_REFUSED)


@cli.command("import")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--site", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="the site directory (made by `bundler site init`)")
@click.option("--json", "as_json", is_flag=True,
              help="print the result as JSON, with each phase's bytes and seconds (progress: JSON lines on stderr)")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
@click.option("--allow-downgrade", is_flag=True,
              help="accept a version older than the one the site runs (rolling back on purpose)")
@click.option("--dry-run", is_flag=True, help="verify everything and print what would change; change nothing")
def import_(bundle: Path, site_dir: Path, as_json: bool, jobs: int, allow_downgrade: bool, dry_run: bool,
            **kind_options: Any) -> None:
    """Verify BUNDLE against the site's trust policy, then seed the site: registry, Git server, update cache.

    Refused (exit 3, nothing changed) unless enough trusted keys signed it, it has not expired, it
    is not older than what the site runs, and every byte matches. Images and artifacts keep their
    digests and tags under <source host>/<path> (a port becomes _PORT); charts go under the chart
    prefix. Importing the same bundle again is a no-op, unless the site lost part of it: into the
    default site, a layer cut short or missing is written again.

    \b
    Example:
      bundler import demo-1.0.0.bundle.tar --site ./site
    """
    from bundler.kinds import KINDS
    from bundler.pipeline.importer import ImportOptions, import_bundle

    if as_json:
        report_as_json()
    by_kind = {kind.key: {name: kind_options[name] for option in kind.options.import_options()
                          if (name := option.name)}
               for kind in KINDS}  # the kinds' own options (their commands role's import_options: --force-refs)
    result = import_bundle(ImportOptions(bundle, site_dir, jobs, allow_downgrade, by_kind, dry_run))
    for note in result.notes if not as_json else ():  # with --json: in the result, stderr holds JSON lines
        click.echo(note, err=True)
    if as_json:
        emit_json(result.to_dict())
    elif result.plan is not None:
        p = result.plan
        click.echo(f"{result.name} {result.version} verified; importing it would (nothing was changed):")
        click.echo(f"  add {len(p['add_artifacts'])} registry artifacts ({human(p['blob_bytes'])} of new blobs)"
                   + "".join(f"\n    {ref}" for ref in p["add_artifacts"]))
        for kind in KINDS:
            for line in kind.report.plan_lines(p):
                click.echo(line)
    elif result.already_imported:
        click.echo(f"{result.name} {result.version} is already imported and every image is present; nothing to do "
                   "(payloads not re-read: `bundler verify` checks this copy)")
    else:
        click.echo(f"imported {result.name} {result.version}: "
                   + "".join(kind.report.import_summary(result.added, result.unchanged) for kind in KINDS)
                   + f"{result.added['blobs']} blobs added, {result.unchanged['blobs']} already there; "
                   f"{human(result.bytes_sent)} sent")


@cli.command()
@click.argument("old", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("new", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def diff(old: Path, new: Path, as_json: bool) -> None:
    """What changed from bundle OLD to NEW (bundle files or their manifests).

    \b
    Example:
      bundler diff store-1.4.0.bundle.tar store-1.5.0.bundle.tar
    """
    from bundler.pipeline.diff import diff_bundles, diff_text

    d = diff_bundles(old, new)
    if as_json:
        emit_json(d)
        return
    click.echo(f"{d['old']['name']} {d['old']['version']} -> {d['new']['name']} {d['new']['version']}")
    for line in diff_text(d):
        click.echo(line)
    b = d["bytes"]
    click.echo(f"content {human(b['old'])} -> {human(b['new'])}; new content {human(b['new_content'])}")


HUB_CREDENTIALS = click.option("--credentials", type=click.Path(dir_okay=False, path_type=Path),
                               help='the hub account: a JSON file {"username": ..., "password": ...} or {"token": ...} '
                                    "(default: the Docker config's credentials for the hub)")
HUB_CA = click.option("--ca", type=click.Path(dir_okay=False, path_type=Path),
                      help="the CA that signed the hub's certificate (default: the system's)")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("hub", metavar="oci://HOST/PATH[:TAG]")
@HUB_CREDENTIALS
@HUB_CA
@click.option("--layer-size", default="16M", show_default=True,
              help="cut the bundle into layers of at most SIZE (downloads resume and run in parallel per layer)")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel uploads")
@click.option("--tag", "tags", multiple=True,
              help="tag it so (repeatable: one upload, several tags, e.g. a delta's VERSION-for-SITE for each site)")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def publish(bundle: Path, hub: str, credentials: Path | None, ca: Path | None, layer_size: str, jobs: int,
            tags: tuple[str, ...], as_json: bool) -> None:
    """Push BUNDLE (a file, or a split bundle's index or any part) to a hub registry as an OCI artifact,
    tagged with its version unless the hub names a tag. Sites take it from there with `bundler site
    sync` once a rollout names it (`bundler fleet rollout start`). The hub is trusted with nothing:
    sites verify the bundle's signatures as for a USB import.

    \b
    Example:
      bundler publish store-1.5.0.bundle.tar oci://harbor.example/edge/store
    """
    from bundler.bundle.parts import parse_size
    from bundler.pipeline.hub import Hub
    from bundler.pipeline.hub import publish as push

    target = Hub.parse(hub)
    if tags and target.tag:
        raise UsageError(f"{hub} names a tag already: give the tags either there or with --tag")
    done = push(bundle, target, target.client(credentials, ca, jobs), parse_size(layer_size), jobs, tags)
    if as_json:
        emit_json({"hub": str(target), "tag": done.tag, "tags": list(tags) or [done.tag], "digest": done.digest,
                   "size": done.size, "layers": done.layers, "name": done.name, "version": done.version,
                   "manifest_digest": done.manifest_digest})
        return
    click.echo(f"published {done.name} {done.version} to {target.host}/{target.repository}:{done.tag} "
               f"({human(done.size)} in {done.layers} layers); artifact digest {done.digest}")
