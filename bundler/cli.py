"""Command line: parse, call one library function, print. Results on stdout, progress and errors on stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import click

from bundler import __version__
from bundler.errors import EXIT_FAILURE, EXIT_REFUSED, EXIT_UNREACHABLE, BundlerError, IntegrityError, UsageError
from bundler.fsutil import atomic_write
from bundler.units import human, printable

JOBS_HELP = "parallel transfers (default 8)"


def _emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


class _Group(click.Group):
    """Turns BundlerError into `error: message` + `hint: ...` and its exit code; -v adds the traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BundlerError as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: {printable(exc.message)}", err=True)  # messages quote bundle content
            if exc.hint:
                click.echo(f"hint: {printable(exc.hint)}", err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except BrokenPipeError:  # the reader went away (`bundler inspect b.tar | head -1`): end quietly
            _silence_stdout()
            ctx.exit(141)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as exc:
            if ctx.meta.get("verbose"):
                traceback.print_exc()
            click.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
            click.echo("hint: run again with -v for the traceback, and report it", err=True)
            ctx.exit(EXIT_FAILURE)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="log details and show tracebacks")
@click.version_option(__version__, prog_name="bundler")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Carry container images, Helm charts, Git repositories, OS/VM updates and OCI artifacts
    (models, any file) across an air gap as one signed, verified bundle file, and serve them on the site.

    \b
    Keys:            bundler keygen release
    Connected side:  bundler build profiles/demo.yaml --key release.key
    Review:          bundler inspect demo-1.0.0.bundle.tar
                     bundler verify demo-1.0.0.bundle.tar --key release.pub
                     bundler sign demo-1.0.0.bundle.tar --key security.key
    Site side:       bundler site init ./site --trust-key release.pub --group line-1
                     bundler site up ./site
                     bundler import demo-1.0.0.bundle.tar --site ./site

    Exit codes: 0 ok, 1 failure, 2 usage or profile error, 3 refused by verification,
    4 a source or target could not be reached.
    """
    ctx.meta["verbose"] = verbose
    # configured once: bundler's own warnings reach the user; libraries' (urllib3's "Connection pool
    # is full", Python warnings) only their errors, everything with -v
    logging.basicConfig(level=logging.DEBUG if verbose else logging.ERROR, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bundler").setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.captureWarnings(True)
    # every command that reads a bundle needs the content kinds registered with the format; imported
    # here, not at the top, so `bundler --help` starts in 0.1 s instead of 0.5 s (measured)
    import bundler.kinds  # noqa: F401


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
def build(profile: Path, output: Path | None, jobs: int, keys: tuple[Path, ...], since: Path | None,
          split_size: str | None, fleet_dir: Path | None) -> None:
    """Collect what PROFILE names (images, charts, Git repositories, updates, artifacts) into one bundle file,
    signed with each --key.

    \b
    Example:
      bundler build profiles/demo.yaml --key release.key -o demo-1.0.0.bundle.tar
    """
    from bundler.bundle.parts import parse_size
    from bundler.pipeline.build import BuildOptions, build_bundle

    size = parse_size(split_size) if split_size else None
    if fleet_dir is not None:
        from bundler.fleet.store import Fleet
        from bundler.pipeline.build import build_for_fleet

        if since is not None or size is not None:
            raise UsageError("--for-fleet makes one delta per site base itself; it takes neither --since nor "
                             "--split-size")
        held = Fleet(fleet_dir).receipt_paths()
        if not held:
            raise UsageError(f"the fleet {fleet_dir} holds no receipts", hint="bundler fleet add RECEIPT...")
        built = build_for_fleet(BuildOptions(profile, None, jobs, keys), held, output or Path.cwd())
        for item in built:
            click.echo(f"wrote {item.result.path} ({human(item.result.size)}) for {', '.join(item.sites)}")
        current = sorted(set(held) - {site for item in built for site in item.sites})
        if current:
            click.echo(f"already at this release: {', '.join(current)}")
        return
    result = build_bundle(BuildOptions(profile, output, jobs, keys, since, size))
    for note in result.notes:
        click.echo(note)
    from bundler.kinds import KINDS

    counts = "".join(f"{result.counts[k.key]} {k.title}, " for k in KINDS if result.counts[k.key] or k.always_reported)
    click.echo(f"wrote {result.path} ({human(result.size)}): {result.name} {result.version}, "
               f"{counts}{result.blobs} unique blobs")
    click.echo(f"manifest digest {result.manifest_digest}")
    click.echo(f"signed by {', '.join(k[:12] for k in result.signers)}" if result.signers
               else "unsigned: sites refuse it until someone signs it (`bundler sign`)")


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
        _emit_json(info)
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
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.option("-j", "--jobs", default=4, show_default=True, type=click.IntRange(1, 64), help="parallel hashing")
def verify(bundle: Path, keys: tuple[Path, ...], threshold: int | None, site_dir: Path | None, as_json: bool,
           jobs: int) -> None:
    """Check BUNDLE against a trust policy, exactly, and report.

    Passes only when at least THRESHOLD distinct trusted keys signed the exact bytes of its
    bundle.json, it has not expired, every listed file is present with its size and sha256, and
    nothing else is in it (no unlisted file, link, device, absolute or .. path, duplicate).
    With --site, also whether that site would refuse it (a rollback, a tag another release set, a
    delta whose base it lacks). Exits 3 otherwise, naming each problem with its code
    (--json: problems as {code, subject, expected, actual, message}; codes in the README).

    \b
    Examples:
      bundler verify demo-1.0.0.bundle.tar --key release.pub
      bundler verify demo-1.0.0.bundle.tar --key release.pub --key security.pub --threshold 2 --json
      bundler verify demo-1.0.0.bundle.tar --site ./site
    """
    from bundler.bundle.verify import unreadable_report, verify_file
    from bundler.keyfiles import load_policy
    from bundler.pipeline.importer import verify_for_site

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
        _emit_json(unreadable_report(bundle, exc, threshold or 1))
        sys.exit(EXIT_REFUSED)
    if as_json:
        _emit_json(report.to_dict())
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
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("-j", "--jobs", default=8, show_default=True, type=click.IntRange(1, 64), help=JOBS_HELP)
@click.option("--allow-downgrade", is_flag=True,
              help="accept a version older than the one the site runs (rolling back on purpose)")
@click.option("--force-refs", "force_refs", multiple=True, metavar="REF",
              help="let this Git ref move other than forward, named in full: refs/heads/main, refs/tags/v1, "
                   "or REPO:REF for one repository (repeatable)")
@click.option("--dry-run", is_flag=True, help="verify everything and print what would change; change nothing")
def import_(bundle: Path, site_dir: Path, as_json: bool, jobs: int, allow_downgrade: bool,
            force_refs: tuple[str, ...], dry_run: bool) -> None:
    """Verify BUNDLE against the site's trust policy, then seed the site: registry, Git server, update cache.

    Refused (exit 3, nothing changed) unless enough trusted keys signed it, it has not expired, it
    is not older than what the site runs, and every byte matches. Images and artifacts keep their
    digests and tags under <source host>/<path> (a port becomes _PORT); charts go under the chart
    prefix. Importing the same bundle again is a no-op.

    \b
    Example:
      bundler import demo-1.0.0.bundle.tar --site ./site
    """
    from bundler.kinds import KINDS
    from bundler.kinds.repos.site import check_force_ref
    from bundler.pipeline.importer import ImportOptions, import_bundle

    force_refs = tuple(map(check_force_ref, force_refs))
    result = import_bundle(ImportOptions(bundle, site_dir, jobs, allow_downgrade, force_refs, dry_run))
    for note in result.notes:
        click.echo(note, err=True)
    if as_json:
        _emit_json(result.to_dict())
    elif result.plan is not None:
        p = result.plan
        click.echo(f"{result.name} {result.version} verified; importing it would (nothing was changed):")
        click.echo(f"  add {len(p['add_artifacts'])} registry artifacts ({human(p['blob_bytes'])} of new blobs)"
                   + "".join(f"\n    {ref}" for ref in p["add_artifacts"]))
        for kind in KINDS:
            for line in kind.plan_lines(p):
                click.echo(line)
    elif result.already_imported:
        click.echo(f"{result.name} {result.version} is already imported and every image is present; nothing to do "
                   "(payloads not re-read: `bundler verify` checks this copy)")
    else:
        click.echo(f"imported {result.name} {result.version}: "
                   + "".join(kind.import_summary(result.added, result.unchanged) for kind in KINDS)
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
        _emit_json(d)
        return
    click.echo(f"{d['old']['name']} {d['old']['version']} -> {d['new']['name']} {d['new']['version']}")
    for line in diff_text(d):
        click.echo(line)
    b = d["bytes"]
    click.echo(f"content {human(b['old'])} -> {human(b['new'])}; new content {human(b['new_content'])}")


@cli.group()
def site() -> None:
    """Set up and look at a site (the disconnected side)."""


@site.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--registry", "registry_url",
              help="an existing registry to seed instead of the embedded one, e.g. https://registry.local:5000")
@click.option("--registry-listen", default="127.0.0.1:5443", show_default=True,
              help="HOST:PORT of the embedded registry (`site up` runs it, with TLS and the site's credentials)")
@click.option("--registry-runtime", type=click.Choice(["auto", "binary", "docker"]), default="auto",
              show_default=True, help="run the embedded registry as the binary, a Docker container, or either")
@click.option("--trust-key", "trust_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a public key whose signature the site accepts (repeatable; copied into DIRECTORY/trust)")
@click.option("--threshold", default=1, show_default=True, type=click.IntRange(1),
              help="how many distinct trusted keys must have signed a bundle")
@click.option("--chart-prefix", default="charts", show_default=True,
              help="registry path charts go under: <registry>/<prefix>/<name>:<version>")
@click.option("--http-listen", default="127.0.0.1:8443", show_default=True,
              help="HOST:PORT of the site's HTTPS service (the Git server)")
@click.option("--hostname", "hostnames", multiple=True, help="a DNS name clients use for the site (certificate)")
@click.option("--ip", "ips", multiple=True, help="an IP address clients use for the site (certificate)")
@click.option("--group", "groups", multiple=True, help="a target group for update approvals (repeatable)")
@click.option("--name", help="the site's name in its receipts and the fleet (default: this host's name)")
@click.option("--image-key", "image_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="a cosign public key (repeatable): images in --image-scope must carry a valid signature by one")
@click.option("--image-scope", "image_scopes", multiple=True, metavar="GLOB",
              help="images the image keys cover, by name (registry.example.com/team/*; repeatable; default *)")
def site_init(directory: Path, registry_url: str | None, registry_listen: str, registry_runtime: str,
              trust_keys: tuple[Path, ...],
              threshold: int, chart_prefix: str, http_listen: str, hostnames: tuple[str, ...], ips: tuple[str, ...],
              groups: tuple[str, ...], name: str | None, image_keys: tuple[Path, ...],
              image_scopes: tuple[str, ...]) -> None:
    """Create a site in DIRECTORY: its registry and its trust policy.

    Also its CA, and two accounts: the client account (credentials.json: pull and fetch only, what
    the cluster gets) and the import account (import-credentials.json: push, for `bundler import`).
    By default `site up` runs an embedded registry with TLS and token authentication.

    \b
    Example (two-person rule: release engineering builds, security countersigns):
      bundler site init ./site --registry http://127.0.0.1:5000 \\
          --trust-key release.pub --trust-key security.pub --threshold 2
      bundler site init ./site --trust-key release.pub --image-key cosign.pub --image-scope 'ghcr.io/acme/*'
    """
    from bundler.pipeline.setup import create_site

    config = create_site(directory, registry_url, trust_keys, threshold, registry_listen=registry_listen,
                         registry_runtime=registry_runtime, chart_prefix=chart_prefix, http_listen=http_listen,
                         hostnames=hostnames, ips=ips, groups=groups, name=name, image_keys=image_keys,
                         image_scopes=image_scopes)
    names = ", ".join(name for name, _ in config.trust_keys)
    click.echo(f"site {config.directory} created; images go to {config.registry_url}; "
               f"bundles need {config.threshold} signature(s) of: {names}")
    click.echo(f"Git server (after `bundler site up`): {config.http_url}/git/<name>.git; "
               f"CA {config.ca_file}; client (pull-only) credentials in {config.credentials_file}")


@site.command("up")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--foreground", is_flag=True,
              help="then stay: watch the services, exit 4 when one stops answering (what `site install` runs)")
@click.option("--wait", type=click.FloatRange(1), default=30.0, show_default=True, metavar="SECONDS",
              help="how long each service may take to answer (a slow disk or a small device may need more)")
@click.option("--check-interval", type=click.FloatRange(0.1), default=5.0, hidden=True)
def site_up(directory: Path, foreground: bool, wait: float, check_interval: float) -> None:
    """Start the site's services in the background: the HTTPS service (the registry's token server,
    Git server, update cache) and the embedded registry (TLS from the site CA, token auth).

    Returns once every service answers its health check; logs go to DIRECTORY/logs. If one fails,
    stops what it started and says which and why. Running it again (after a reboot) starts only
    what is not running, and upgrades a site made by an older bundler (a pull-only client account
    that keeps its password, an import account, registry tokens).

    \b
    Example:
      bundler site up ./site
    """
    import signal
    import threading

    from bundler.kinds import KINDS
    from bundler.pipeline.setup import start_site
    from bundler.site.service import site_down as down

    stop = threading.Event()
    if foreground:  # a stop (systemctl stop) while the services start: they finish starting, then stop
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    site = start_site(directory, wait)
    services = "".join(f"{name} at {service['url']}, "
                       for kind in KINDS for name, service in kind.services(site).items())
    click.echo(f"site {site.directory} is up: registry at {site.registry_url}, {services}"
               f"(CA {site.ca_file}, credentials in {site.credentials_file})")
    if foreground:
        from bundler.site.service import supervise

        try:
            supervise(directory, stop, check_interval)  # raises (exit 4) when a service stays down
        except KeyboardInterrupt:
            stop.set()
        finally:
            down(directory)


@site.command("install")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--unit-dir", type=click.Path(file_okay=False, path_type=Path), default="/etc/systemd/system",
              show_default=True, help="where to write the systemd unit")
@click.option("--user", help="the account the services run as (default bundler-<site name>, made when missing)")
@click.option("--python", "python", type=click.Path(dir_okay=False), default=sys.executable, show_default=True,
              help="the interpreter the unit runs bundler with (the site's user must be able to run it)")
def site_install(directory: Path, unit_dir: Path, user: str | None, python: str) -> None:
    """Write a systemd unit so the site's services start at boot and restart on failure.

    One unit per site name (bundler-site-<name>.service). The services run as the site's own
    unprivileged user (made when missing; it gets the site directory), under systemd's hardening
    (read-only system, private /tmp, no new privileges, the site directory the only place written).
    The unit runs `bundler site up DIRECTORY --foreground` and `site down` to stop.

    \b
    Example:
      bundler site install /srv/site
      systemctl daemon-reload && systemctl enable --now bundler-site-store-7.service
    """
    from bundler.site.systemd import install_unit

    path = install_unit(directory, unit_dir, user, python)
    click.echo(f"wrote {path}; enable it with: systemctl daemon-reload && systemctl enable --now {path.name}")


@site.command("hand-over")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.argument("subject")
@click.option("--to", "bundle_name", required=True, help="the bundle name that may move SUBJECT from now on")
def site_hand_over(directory: Path, subject: str, bundle_name: str) -> None:
    """Give a name on the site to another bundle name, on purpose.

    Every name a bundle moves on a site (a tag, an image's signature tags, a download by file
    name, a Git repository) belongs to the bundle name that first set it; another name's import is
    refused (name-owned) with SUBJECT as it names it: `files/<name>`, `git/<name>.git` or
    `<repository>:<tag>`. When a product really takes one over (a rename, a merged product), say so
    here; it is recorded in the site's state and `site status --json` lists it (`handovers`).

    \b
    Example:
      bundler site hand-over /srv/site files/firmware.bin --to store-pos
    """
    from bundler.pipeline.ownership import hand_over
    from bundler.site.config import load_site

    previous = hand_over(load_site(directory), subject, bundle_name)
    click.echo(f"{printable(subject)} handed over from {printable(previous)} to {bundle_name}")


@site.command("receipt")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="write it here (default: stdout)")
def site_receipt(directory: Path, output: Path | None) -> None:
    """Write the site's receipt, signed by the site's key: every release imported (version, content
    digest, signers, when), Git refs, the files it holds, update payloads, what each update client
    lacks, disk use. Carry it back: `bundler fleet add` keeps it, `build --since` builds a delta on it.

    \b
    Example:
      bundler site receipt ./site -o /media/usb/store-7.receipt.json
    """
    from bundler.pipeline.importer import site_receipt as make_receipt

    text = json.dumps(make_receipt(directory), indent=2, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        atomic_write(output, text.encode())
        click.echo(f"receipt of {directory} written to {output}", err=True)


@site.command("down")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def site_down(directory: Path) -> None:
    """Stop what `site up` started."""
    from bundler.site.service import site_down as down

    click.echo(f"site {directory}: {'stopped' if down(directory) else 'was not running'}")


@site.command("prune")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--keep", type=click.IntRange(1), help="releases of each bundle name to keep (default: site.yaml's "
              "retention.keep, 3)")
@click.option("--dry-run", is_flag=True, help="print what would go and the bytes it frees; change nothing")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def site_prune(directory: Path, keep: int | None, dry_run: bool, as_json: bool) -> None:
    """Free space: keep the last N releases of each bundle name, remove what only older ones use.

    Removes their images', charts' and artifacts' manifests (never one a kept release names, nor its
    signatures, attestations, SBOMs or referrers), then runs the registry's garbage collector (the
    registry stopped for the pass); update payloads no kept release carries and no group approved;
    what refused imports left. Git history stays. Safe to interrupt (run it again) and on a full disk.

    \b
    Examples:
      bundler site prune ./site --dry-run
      bundler site prune ./site --keep 2
    """
    from bundler.pipeline.prune import prune_site

    plan = prune_site(directory, keep, dry_run)
    if as_json:
        _emit_json({**plan.to_dict(), "dry_run": dry_run})
        return
    done = "would free" if dry_run else "freed"
    releases = ", ".join(f"{b['name']} {b['version']}" for b in plan.pruned) or "none"
    click.echo(f"{'would prune' if dry_run else 'pruned'} releases (keeping {plan.keep} of each name): {releases}")
    click.echo(f"  registry: {len(plan.manifests)} manifests, {human(plan.freed['registry'])} of blobs only they use")
    for repo, digest in plan.manifests:
        click.echo(f"    {printable(repo)}@{digest[:19]}")
    for key, part in plan.kinds.items():
        if part.items or part.bytes:
            click.echo(f"  {key}: {len(part.items)} ({human(part.bytes)})" + "".join(f"\n    {printable(item)}"
                                                                                 for item in part.items))
    if plan.leftovers:
        click.echo(f"  left by refused imports: {sum(map(len, plan.leftovers.values()))} files")
    click.echo(f"{done} {human(sum(plan.freed.values()))}" + (" (nothing was changed)" if dry_run else ""))


@site.command("status")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def site_status(directory: Path, as_json: bool) -> None:
    """Show the site's services (URL, health), its CA and credentials files, and what it imported.

    Exits 4 when a service that should run does not answer (the JSON is printed all the same).
    """
    from bundler.pipeline.prune import disk_report, stored_bytes
    from bundler.pipeline.status import site_status as status
    from bundler.site import figures
    from bundler.site.config import load_site

    info = status(directory)
    site = load_site(directory)
    kept = figures.read(site, figures.DISK_FILE)  # what the last import, prune or start measured: no walk
    if kept is not None:
        info["disk"] = {**kept.figures, "measured_at": kept.measured_at.isoformat().replace("+00:00", "Z")}
    else:
        info["disk"] = disk_report(site, site.registry_client(2) if info["services"]["registry"]["healthy"] else None)
    if as_json:
        _emit_json(info)
    else:
        for name, service in info["services"].items():
            click.echo(f"{name}: {service['url']} ({'healthy' if service['healthy'] else 'NOT answering'})")
        click.echo(f"CA: {info['ca_file']}  credentials: {info['credentials_file']}")
        for b in info["bundles"]:
            publishing = " (still publishing: run the same import again to finish it)" \
                if b.get("status") == "publishing" else ""
            click.echo(f"imported {b['name']} {b['version']} {b['manifest_digest']} at {b['imported_at']}{publishing}")
        d = info["disk"]
        kinds = ", ".join(f"{name} {human(size)}" for name, size in stored_bytes(d).items())
        when = f"; measured {kept.age}" if kept is not None else ""
        click.echo(f"disk: {d['used_percent']}% of {human(d['total'])} used, {human(d['free'])} free ({kinds}{when})")
        if d["prune"]["releases"]:
            freed, gone = human(sum(d["prune"]["bytes_freed"].values())), ", ".join(d["prune"]["releases"])
            click.echo(f"a prune (keeping {d['prune']['keep']}) would free {freed}: {gone}")
        if d["warning"]:
            click.echo(f"warning: {d['warning']}", err=True)
    if not info["healthy"]:
        if not as_json:
            click.echo(f"hint: start the site's services: bundler site up {directory}", err=True)
        sys.exit(EXIT_UNREACHABLE)


@cli.group()
def fleet() -> None:
    """The connected side's view of the sites: their signed receipts, and which release each runs.

    \b
    Workflow: enroll each site's key once (its DIR/site.pub), then add the receipts the technicians
    bring back on the stick (`bundler site receipt DIR -o FILE`), then look:
      bundler fleet enroll store-7.pub
      bundler fleet add /media/usb/*.receipt.json
      bundler fleet status
    """


FLEET_OPTION = click.option("--fleet", "fleet_dir", default="fleet", show_default=True,
                            type=click.Path(file_okay=False, path_type=Path), help="the fleet directory")


@fleet.command("enroll")
@click.argument("pubs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
@click.option("--name", help="the site this key speaks for (one PUB; default: the name in its first receipt)")
def fleet_enroll(pubs: tuple[Path, ...], fleet_dir: Path, name: str | None) -> None:
    """Accept receipts signed by these site keys (each site's DIR/site.pub). A key speaks for one
    site: receipts it signs for another site's name are refused.

    \b
    Example:
      bundler fleet enroll store-7/site.pub --name store-7 --fleet ./fleet
    """
    from bundler.fleet.store import Fleet

    if name is not None and len(pubs) != 1:
        raise UsageError("--name binds one key to one site: give one PUB with it")
    for pub in pubs:
        click.echo(f"enrolled {pub} (key {Fleet(fleet_dir).enroll(pub, name)[:12]})"
                   + (f" for site {name}" if name else ""))


@fleet.command("add")
@click.argument("receipts", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
def fleet_add(receipts: tuple[Path, ...], fleet_dir: Path) -> None:
    """Keep the latest receipt of each site, after checking its signature against the enrolled
    site keys (an unknown key or a receipt edited after signing: refused, exit 3)."""
    from bundler.fleet.store import Fleet

    for path in receipts:
        added = Fleet(fleet_dir).add(path)
        state = "kept" if added.kept else "older than the receipt the fleet holds; not kept"
        click.echo(f"site {added.site}: receipt of {added.created} {state}")


@fleet.command("plan")
@click.argument("release", type=click.Path(dir_okay=False, path_type=Path))
@FLEET_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def fleet_plan(release: Path, fleet_dir: Path, as_json: bool) -> None:
    """For each site, what it needs of RELEASE (a profile, or a release's full bundle or bundle.json):
    nothing, a delta on its receipt, or everything, and how many bytes; `build --for-fleet` writes them.

    \b
    Example:
      bundler fleet plan profiles/store.yaml --fleet ./fleet
    """
    from bundler.fleet.store import Fleet

    fleet = Fleet(fleet_dir)
    if release.suffix in (".yaml", ".yml"):  # sources' manifests and sizes are read; nothing is written
        from bundler.pipeline.build import BuildOptions, collecting

        with collecting(BuildOptions(release), Path.cwd()) as collected:
            name, version = collected.profile.name, collected.profile.version
            rows = fleet.plan(name, version, collected.size)
    else:
        from bundler.bundle.parent import load_manifest

        manifest, _ = load_manifest(release)
        name, version = manifest.name, manifest.version
        rows = fleet.plan(name, version, lambda base: sum(e.size for p, e in manifest.files.items()
                                                          if base.files.get(p) != e))
    if as_json:
        _emit_json({"name": name, "version": version, "sites": rows})
        return
    for row in rows:
        needs = {"nothing": "runs it already", "full": "a full bundle",
                 "delta": f"a delta on {row.get('base')}"}[row["needs"]]
        click.echo(f"{printable(row['site'])}: {needs} ({human(row['bytes'])})")


@fleet.command("status")
@FLEET_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the status as an HTML page (the site status page's look) to FILE")
def fleet_status(fleet_dir: Path, as_json: bool, html_file: Path | None) -> None:
    """Sites x bundle names: the version each site runs, the age of its receipt, update clients
    lacking approved updates, disk use.

    \b
    Example:
      bundler fleet status --html fleet.html
    """
    from bundler.fleet.store import Fleet

    info = Fleet(fleet_dir).status()
    if html_file is not None:
        from bundler.fleet.report import fleet_page

        atomic_write(html_file, fleet_page(info))
        click.echo(f"wrote {html_file}", err=True)
    if as_json:
        _emit_json(info)
        return
    bundles = info["bundles"]
    click.echo("site".ljust(20) + "".join(b.ljust(14) for b in bundles) + "receipt age  clients lacking")
    for s in info["sites"]:
        versions = "".join(printable(s["running"].get(b, "-")).ljust(14) for b in bundles)
        lacking = ", ".join(f"{printable(c)} ({n})" for c, n in s["clients_lacking_updates"].items()) or "none"
        click.echo(printable(s["site"]).ljust(20) + versions + f"{s['receipt_age_hours']:>8.1f} h  {lacking}")


@cli.group()
def updates() -> None:
    """The site's update cache: what was imported, approvals per group, what clients lack."""


SITE_OPTION = click.option("--site", "site_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                           help="the site directory")


@updates.command("list")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def updates_list(site_dir: Path, as_json: bool) -> None:
    """Every imported update, and the groups it is approved (or declined) for."""
    from bundler.kinds.updates.cache import UpdateCache
    from bundler.site.config import load_site

    cache = UpdateCache(load_site(site_dir))
    approvals = cache.approvals()
    entries = [{k: e[k] for k in ("name", "kind", "file", "version", "arch", "sha256", "size", "bundle", "imported_at")}
               | {"groups": {g: d[e["sha256"]] for g, d in approvals.items() if e["sha256"] in d}}
               for e in cache.catalog()]
    if as_json:
        _emit_json({"updates": entries})
        return
    for e in entries:
        groups = ", ".join(f"{g}: {d}" for g, d in e["groups"].items()) or "not approved anywhere"
        click.echo(f"{e['name']} {e['version']} {e['arch']} ({e['kind']}, {human(e['size'])}) "
                   f"{e['sha256'][:12]}  [{groups}]")


def _decide(name: str, group: str, site_dir: Path, decision: str) -> None:
    from bundler.kinds.updates.cache import UpdateCache
    from bundler.site.config import load_site

    for e in UpdateCache(load_site(site_dir)).decide(name, group, decision):
        click.echo(f"{decision} {e['name']} {e['version']} ({e['sha256'][:12]}) for {group}")


@updates.command("approve")
@click.argument("name")
@click.option("--group", required=True, help="the target group")
@SITE_OPTION
def updates_approve(name: str, group: str, site_dir: Path) -> None:
    """Approve NAME (a name, name=version, file name or sha256 prefix) for a group; republishes.

    \b
    Example:
      bundler updates approve hello-tool --group line-1 --site ./site
    """
    _decide(name, group, site_dir, "approved")


@updates.command("decline")
@click.argument("name")
@click.option("--group", required=True, help="the target group")
@SITE_OPTION
def updates_decline(name: str, group: str, site_dir: Path) -> None:
    """Decline NAME for a group (it leaves the group's repositories; later imports keep the decision)."""
    _decide(name, group, site_dir, "declined")


@updates.command("enroll")
@click.argument("client")
@click.option("--group", required=True, help="the target group the client belongs to")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print the token and the configuration as JSON")
def updates_enroll(client: str, group: str, site_dir: Path, as_json: bool) -> None:
    """Enroll update client CLIENT in a group; print its token (shown once; a new enroll replaces it)
    and its configuration: apt (sources and auth.conf), dnf (a .repo file), curl or PowerShell.

    A group is a boundary: a client reads its own group's indexes, approvals and payloads only, and
    reports for itself only. The token goes as `Authorization: Bearer TOKEN`, or as the password of
    user CLIENT (apt's auth.conf, dnf's username/password).

    \b
    Example:
      bundler updates enroll pos-7 --group line-1 --site ./site
    """
    from bundler.kinds.updates.cache import UpdateCache, client_configuration
    from bundler.site.config import load_site

    site = load_site(site_dir)
    config = client_configuration(site, client, group, UpdateCache(site).enroll(client, group))
    if as_json:
        _emit_json(config)
        return
    copy = "".join(f"\n  {source} -> {target}" for source, target in config["copy"].items())
    click.echo(f"client {client} enrolled in {group}; its token (shown once): {config['token']}\n"
               f"copy to the client:{copy}\n"
               f"apt: /etc/apt/sources.list.d/bundler-site.list:\n  {config['apt']['sources']}\n"
               f"  /etc/apt/auth.conf.d/bundler-site.conf (mode 0600):\n  {config['apt']['auth_conf']}\n"
               f"  /etc/apt/apt.conf.d/80bundler-site:\n  {config['apt']['ca_conf']}\n"
               f"dnf: /etc/yum.repos.d/bundler-site.repo (mode 0600):\n"
               + "".join(f"  {line}\n" for line in config["dnf"]["repo"].splitlines())
               + f"curl: curl --cacert {site.ca_file} -H '{config['http']['header']}' {config['http']['approved']}\n"
               f"PowerShell: Invoke-RestMethod -Headers @{{Authorization='Bearer {config['token']}'}} "
               f"{config['http']['approved']}")


@updates.command("status")
@SITE_OPTION
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def updates_status(site_dir: Path, as_json: bool) -> None:
    """Per client that reported: its group, when it last reported, and the approved updates it lacks."""
    from bundler.kinds.updates.cache import UpdateCache
    from bundler.site.config import load_site

    clients = UpdateCache(load_site(site_dir)).status()
    if as_json:
        _emit_json({"clients": clients})
        return
    for c in clients:
        lacking = ", ".join(f"{u['name']} {u['version']}" for u in c["lacking"]) or "nothing"
        click.echo(f"{c['client']} ({c['group']}, reported {c['reported_at']}): lacks {lacking}")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit does not raise BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def main() -> None:
    try:
        cli(prog_name="bundler")
    except SystemExit:
        # click met a closed pipe writing help or usage: it wrapped stdout and exits 1; say 141 as tools do
        if type(sys.stdout).__name__ in ("PacifyFlushWrapper", "_PacifyFlushWrapper"):
            sys.exit(141)
        raise


if __name__ == "__main__":  # pragma: no cover
    main()

