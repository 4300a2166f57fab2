"""`make bench`: bundler against the by-hand skopeo pipeline, on the same machine, in the same run.

Synthetic set: 10 OCI images, 310 MB of unique layers (a 10 MB layer in all of them, two 40 MB base
layers each shared by five, and a 22 MB layer of each image's own), served by a local Distribution
registry. Measured (best of --runs, wall time; peak RSS of the bundler process):

  build:     bundler build            vs  skopeo copy --all of each image into one OCI layout, then tar cf
  import:    bundler import (verify + push) into a new DEFAULT site (`site init` + `site up`: the
             embedded registry with TLS and token auth, as every technician runs it)
                                      vs  tar xf, then skopeo copy --all of each image into a new default
                                          site (--dest-cert-dir with the site CA, --dest-creds)
  re-import: bundler import again     vs  skopeo copy --all of each image again onto the same site
  floor:     bundler import           vs  the physical floor: the bundle read once, hashed with OpenSSL's
                                          sha256 and written once, in one pass (cat | tee | openssl dgst),
                                          warm cache, same run (issue 27's goal: within 1.5x)
  floor/sync: the same import         vs  the same pass with its copy synced to the disk (`sync FILE`), as
                                          the import's blobs are (as Distribution syncs each file it
                                          writes) before anything names them; the three alternate
                                          FLOOR_RUNS times, each import into a new default site (this
                                          machine's speed drifts by a fifth within minutes)
  model:     bundler import of a 3 GiB single-file artifact vs its floors (unsynced, synced), each from a
             cold cache (/proc/sys/vm/drop_caches, as root; else warm), and vs tar xf + skopeo copy into
             a default site
  build floor: the build of the bench bundle vs its physical floor: every unique blob read once from
             the source registry (one curl, one connection), hashed with OpenSSL's sha256 and written
             once (`curl | tee | openssl dgst`); alternated with the builds, best of each
  morning:   23 nodes (processes of devtools/morning.py, the cluster's account) pulling 6 images each at
             once, and one node alone, from the default site vs the same registry's own TLS listener
             (same certificate and token server), alternated MORNING_ROUNDS times
  parity:    the bench bundle built as 10 parts with --parity 2 vs the same 10 parts without parity
             (both alternated PARITY_RUNS times), and its import into a new default site with one of
             the 10 parts deleted (rebuilt from parity as it is read) vs the same set whole
  large:     a 9 GiB model file packed `as: image`, built into FAT32 parts: build, verify, import (cold),
             peak RSS of each (goal < 200 MB), and the file read back from the site through tarfile
  plain:     bundler import into a plain registry (no TLS, no auth): what the default site costs on top
  pull:      skopeo copy of every image from the default site (site CA, the cluster's pull account)
                                      vs  the same from a plain registry (both up, the two alternated
                                          PULL_ROUNDS times, each after a sync)
  front:     the same pull through the site's front (nginx: TLS, deadlines, limits; the registry on
             its unix socket)     vs  the same registry's own TLS listener (a second Distribution
                                          process on the site's storage, its certificate and token
                                          configuration, on a port of its own), alternated
  download:  curl of a 200 MB update payload from the default site (an enrolled client's token: the
             application authorizes, nginx sends the file over TLS)
                                      vs  curl of the same file from a plain static HTTPS server
                                          (`openssl s_server -WWW`, the site's certificate); and, for
                                          the cost of TLS itself, from busybox httpd over plain HTTP;
                                          the three alternate DOWNLOAD_ROUNDS times, best of each

Goals: build <= 1.0x, import <= 0.6x, re-import <= 1.0x of skopeo; import into the default site
<= 1.3x into a plain registry; pulls from the default site <= 1.3x from a plain one, and <= 1.1x
from the registry's own TLS listener (issue 35: the front costs a pull nothing); a payload
download from the site <= 1.25x from a static server; peak RSS < 200 MB.
Also: `bundler sign` on a 1 GiB bundle: it checks every payload's digest before it signs, so it
costs what `bundler verify` costs (no peer signs bundles); memory stays flat.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bundler.oci.client import RegistryClient
from bundler.oci.reference import ImageReference
from bundler.site.registry_process import RegistryProcess, free_port, start_registry, wait_until_answers
from devtools import images as im

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".bench"
MB = 1_000_000


def run(cmd: list[str], cwd: Path = WORK, output: Path | None = None) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command (its stdout to `output`); fails loudly."""
    start = time.perf_counter()
    with open(output or os.devnull, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        sys.exit(f"benchmark step failed ({proc.returncode}): {' '.join(cmd)}\n{err}")
    return elapsed, usage.ru_maxrss * 1024


def run_all(cmds: list[list[str]]) -> float:
    return sum(run(cmd)[0] for cmd in cmds)


def push_set(client: RegistryClient) -> list[str]:
    common = im.random_layer(10 * MB, seed=100)
    bases = [im.random_layer(40 * MB, seed=101), im.random_layer(40 * MB, seed=102)]
    refs = []
    for i in range(10):
        layers = [common, bases[i // 5], im.random_layer(22 * MB, seed=200 + i)]
        im.push_image(client, f"bench/app-{i}", "1.0", layers, oci=True)
        refs.append(f"{client.host}/bench/app-{i}:1.0")
    return refs


def one_gigabyte_bundle(path: Path) -> None:
    """A signed bundle with one 1 GiB layer (sparse on disk: the point is the file's size)."""
    from bundler.keyfiles import load_signing_key
    from bundler.kinds.base import Part
    from bundler.kinds.images.entry import ImageEntry
    from bundler.oci import media
    from bundler.oci.content import BlobSource, OciContent
    from bundler.pipeline.build import BundleInfo, Contents, write_bundle

    layer_file = WORK / "zeros.layer"
    with open(layer_file, "wb") as f:
        f.truncate(1 << 30)
    with open(layer_file, "rb") as f:
        digest = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
    layer = im.Layer(b"", digest)
    cfg = im.config([layer])
    manifest = im.oci_manifest(cfg, [(digest, 1 << 30)])
    collection = OciContent()
    collection.add_small_blob(im.sha(manifest), manifest)
    collection.add_small_blob(im.sha(cfg), cfg)
    collection.add_blob(BlobSource(digest, 1 << 30, "bench", path=layer_file))
    contents = Contents(collection, {"images": Part((ImageEntry("example.test/big:1", im.sha(manifest),
                                                                media.OCI_MANIFEST),))})
    write_bundle(BundleInfo("big", "1.0.0", "sha256:" + "0" * 64), contents, path, jobs=2,
                 keys=[load_signing_key(WORK / "release.key")])
    layer_file.unlink()


def push_extra_layer(client: RegistryClient) -> int:
    """v2 of the set: app-3 gains a 22 MB layer; return its size."""
    common = im.random_layer(10 * MB, seed=100)
    layers = [common, im.random_layer(40 * MB, seed=101), im.random_layer(22 * MB, seed=203)]
    extra = im.random_layer(22 * MB, seed=999)
    im.push_image(client, "bench/app-3", "1.0", [*layers, extra], oci=True)
    return len(extra.data)


def stored_bytes(storage: Path) -> int:
    """Bytes of blob data a registry holds on disk (finished and in-progress uploads)."""
    return sum(f.stat().st_size for f in storage.rglob("data") if f.is_file())


def measure_resume(bundler: list[str]) -> dict[str, float]:
    """On a default site, kill an import (SIGKILL) once about half of its bytes reached the registry,
    run it again: how long, and how many bytes it sends again."""
    full = sum(e["size"] for p, e in json.loads(subprocess.run(
        [*bundler, "inspect", "bench.bundle.tar", "--manifest"], cwd=WORK, capture_output=True, text=True,
        check=True).stdout)["files"].items() if p.startswith("oci/blobs/"))
    with default_site(bundler, "resume-dir") as site:
        storage = site.directory / "registry" / "storage"
        proc = subprocess.Popen([*bundler, "import", "bench.bundle.tar", "--site", "resume-dir"], cwd=WORK,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while proc.poll() is None and stored_bytes(storage) < full // 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.kill()
        proc.wait()
        before = stored_bytes(storage)
        start = time.perf_counter()
        out = subprocess.run([*bundler, "import", "bench.bundle.tar", "--site", "resume-dir", "--json"], cwd=WORK,
                             capture_output=True, text=True, check=True).stdout
        elapsed = time.perf_counter() - start
    return {"stored_before_kill": before, "resume_s": elapsed, "resent": json.loads(out)["bytes_sent"],
            "full_bytes": full}


@dataclass
class DefaultSite:
    host: str  # the embedded registry, 127.0.0.1:PORT
    pull_options: list[str]  # skopeo options of a cluster client: the site CA, the pull account
    push_options: list[str]  # skopeo options of a by-hand import: the site CA, the import account
    directory: Path

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    def token_for_pull(self, repository: str | None = None) -> tuple[str, str]:
        """(CA file, bearer token) of the cluster's account, as a client gets it from the token server
        (for `GET /v2/`, or to pull `repository`)."""
        ca = str(self.directory / "pki" / "ca.pem")
        challenge = requests.get(f"{self.url}/v2/", verify=ca, timeout=10).headers["WWW-Authenticate"]
        fields = dict(part.split("=", 1) for part in challenge.removeprefix("Bearer ").split(","))
        creds = json.loads((self.directory / "credentials.json").read_text())
        params = {"service": fields["service"].strip('"'),
                  **({"scope": f"repository:{repository}:pull"} if repository else {})}
        r = requests.get(fields["realm"].strip('"'), params=params, auth=(creds["username"], creds["password"]),
                         verify=ca, timeout=10)
        return ca, str(r.json()["token"])


def per_request(url: str, auth: tuple[str, str] | None, n: int = 300) -> float:
    """Seconds per authenticated `GET /v2/` on one kept-alive connection (best of three rounds)."""
    session = requests.Session()
    headers = {"Authorization": f"Bearer {auth[1]}"} if auth else {}
    verify: str | bool = auth[0] if auth else False
    assert session.get(f"{url}/v2/", headers=headers, verify=verify, timeout=10).status_code == 200
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            session.get(f"{url}/v2/", headers=headers, verify=verify, timeout=10)
        best = min(best, (time.perf_counter() - start) / n)
    return best


@contextlib.contextmanager
def default_site(bundler: list[str], name: str) -> Iterator[DefaultSite]:
    """A site as `site init` + `site up` make it by default (embedded registry, TLS, token auth)."""
    directory = WORK / name
    shutil.rmtree(directory, ignore_errors=True)
    registry = f"127.0.0.1:{free_port()}"
    run([*bundler, "site", "init", "--as-root", name, "--trust-key", "release.pub", "--registry-listen", registry,
         "--http-listen", f"127.0.0.1:{free_port()}", "--group", "line-1"])
    run([*bundler, "site", "up", name])
    certs = directory / "skopeo-certs"
    certs.mkdir()
    shutil.copy(directory / "pki" / "ca.pem", certs / "ca.crt")

    def creds(file: str) -> str:
        doc = json.loads((directory / file).read_text())
        return f"{doc['username']}:{doc['password']}"

    try:
        yield DefaultSite(registry, ["--src-cert-dir", str(certs), "--src-creds", creds("credentials.json")],
                          ["--dest-cert-dir", str(certs), "--dest-creds", creds("import-credentials.json")], directory)
    finally:
        run([*bundler, "site", "down", name])


FLOOR_RUNS = 5


def source_floor(host: str, refs: list[str]) -> float:
    """The bench build's floor: every unique blob of `refs` read once from the registry at `host`, hashed
    with OpenSSL's sha256 and written once, in one pass (after a sync)."""
    urls: dict[str, str] = {}
    for ref in refs:
        parsed = ImageReference.parse(ref)
        manifest = requests.get(f"http://{host}/v2/{parsed.repository}/manifests/{parsed.tag}", timeout=30,
                                headers={"Accept": "application/vnd.oci.image.manifest.v1+json"}).json()
        for digest in [manifest["config"]["digest"], *(layer["digest"] for layer in manifest["layers"])]:
            urls.setdefault(digest, f"http://{host}/v2/{parsed.repository}/blobs/{digest}")
    os.sync()
    pipeline = f"curl -sf {' '.join(urls.values())} | tee floor.copy | openssl dgst -sha256 >/dev/null"
    seconds = run(["sh", "-c", pipeline])[0]
    (WORK / "floor.copy").unlink()
    return seconds
PARITY_RUNS = 5
PARITY_PARTS = 10


def measure_parity(bundler: list[str]) -> dict[str, list[float]]:
    """Builds of the bench profile as PARITY_PARTS parts, without and with 2 parity parts, then imports
    of the parity set into new default sites, whole and with one part deleted; each pair alternated."""
    size = (WORK / "bench.bundle.tar").stat().st_size
    split = f"{-(-size // (PARITY_PARTS << 10))}K"  # the last part a little shorter
    out: dict[str, list[float]] = {"plain": [], "parity": [], "whole": [], "rebuilt": [], "flipped": []}
    for name, extra in [("plain", []), ("parity", ["--parity", "2"])] * PARITY_RUNS:
        shutil.rmtree(WORK / name, ignore_errors=True)
        (WORK / name).mkdir()
        os.sync()
        out[name].append(run([*bundler, "build", "profile.yaml", "-o", f"{name}/p.bundle.tar", "--key", "release.key",
                              "--split-size", split, *extra])[0])
    assert len(list((WORK / "parity").glob("p.bundle.tar.part-*"))) == PARITY_PARTS
    shutil.copytree(WORK / "parity", WORK / "lost")
    (WORK / "lost" / "p.bundle.tar.part-004").unlink()
    shutil.copytree(WORK / "parity", WORK / "flipped")
    with open(WORK / "flipped" / "p.bundle.tar.part-004", "r+b") as f:  # found only when a payload fails
        f.seek(f.seek(0, os.SEEK_END) // 2)
        f.write(b"\xff" * 64)
    for name, where in [("whole", "parity"), ("rebuilt", "lost"), ("flipped", "flipped")] * PARITY_RUNS:
        with default_site(bundler, "parity-site"):
            os.sync()
            out[name].append(run([*bundler, "import", f"{where}/p.bundle.tar.parts.json", "--site", "parity-site"])[0])
    for name in ("plain", "parity", "lost", "flipped"):
        shutil.rmtree(WORK / name, ignore_errors=True)
    return out


def single_pass(files: str, directory: Path = WORK, durable: bool = False) -> float:
    """The physical floor of an import of `files` (a shell pattern): read once, hashed with OpenSSL's
    sha256 and written once, in one pass (cat | tee | openssl dgst); wall seconds. `durable`: the copy
    is also on the disk at the end (`sync FILE`: its fsync), as an import's blobs are before anything
    names them; without it the copy may still be in the page cache when the clock stops."""
    synced = " && sync floor.copy" if durable else ""
    seconds = run(["sh", "-c", f"cat {files} | tee floor.copy | openssl dgst -sha256 >/dev/null{synced}"],
                  cwd=directory)[0]
    (directory / "floor.copy").unlink()
    return seconds


@dataclass
class Floors:
    """Import times and the floors measured beside them (seconds)."""

    imports: list[float]
    page_cache: list[float]  # the copy written, maybe not yet on the disk
    durable: list[float]  # the copy on the disk


def measure_floor(bundler: list[str]) -> Floors:
    """The bench bundle's import into a new default site and its physical floors (read once, hashed
    with OpenSSL's sha256, written once: one pass; then the copy synced too), alternated FLOOR_RUNS
    times so that each trio runs in the same minute."""
    floors = Floors([], [], [])
    for _ in range(FLOOR_RUNS):
        os.sync()  # each of the three starts with nothing of an earlier step's still to write back
        floors.page_cache.append(single_pass("bench.bundle.tar"))
        os.sync()
        floors.durable.append(single_pass("bench.bundle.tar", durable=True))
        with default_site(bundler, "floor-dir"):
            os.sync()
            floors.imports.append(run([*bundler, "import", "bench.bundle.tar", "--site", "floor-dir"])[0])
    return floors


PAYLOAD_BYTES = 200 * MB
MODEL_BYTES = 3 << 30  # one file of a multi-GiB model, packed as an OCI artifact
LARGE_BYTES = 9 << 30  # an FP16 model file: past ustar's 8 GiB, more than two FAT32 parts
LARGE_SPLIT = "fat32"  # parts a USB stick formatted FAT32 holds


def drop_caches() -> bool:
    """Empty the page cache (root only): a cold read, as from a USB medium just plugged in."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def cold_floors(files: str, directory: Path = WORK) -> tuple[float, float]:
    """single_pass of `files` from a cold cache, unsynced then synced: (floor, synced floor)."""
    drop_caches()
    floor = single_pass(files, directory)
    drop_caches()
    return floor, single_pass(files, directory, durable=True)


def write_model(path: Path, size: int) -> str:
    """A model file of `size` bytes (a random 64 MiB block repeated); its sha256. Written by a child
    process: a child forked later inherits this process's peak RSS in its own (ru_maxrss)."""
    return subprocess.run([sys.executable, "-m", "devtools.bench", "--write-model", str(path), str(size)],
                          check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def _write_model(path: Path, size: int) -> str:
    chunk, digest = os.urandom(64 << 20), hashlib.sha256()
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
            digest.update(chunk)
    return digest.hexdigest()


def measure_model(bundler: list[str]) -> dict[str, float | bool]:
    """A 3 GiB single-file artifact: its import into a default site against the single-pass floor of
    its bundle (read, sha256, write once), each from a cold cache when the machine allows."""
    model = WORK / "model.bin"
    write_model(model, MODEL_BYTES)
    (WORK / "model.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: model, version: 1.0.0}\nspec:\n  artifacts:\n"
        "    - path: model.bin\n      repository: registry.example.com/models/order-accuracy\n      tag: \"1.0\"\n"
        "      artifactType: application/vnd.acme.model.v1\n")
    run([*bundler, "build", "model.yaml", "-o", "model.bundle.tar", "--key", "release.key"])
    model.unlink()
    floor, durable = cold_floors("model.bundle.tar")
    with default_site(bundler, "model-site"):
        cold = drop_caches()
        t, rss = run([*bundler, "import", "model.bundle.tar", "--site", "model-site"])
    shutil.rmtree(WORK / "model-site", ignore_errors=True)
    # the peer: the bundle is an OCI layout in a tar; a technician with skopeo unpacks it and copies
    with default_site(bundler, "model-peer") as peer:
        shutil.rmtree(WORK / "model-unpacked", ignore_errors=True)
        (WORK / "model-unpacked").mkdir()
        drop_caches()
        peer_t = run(["tar", "xf", "model.bundle.tar", "-C", "model-unpacked"])[0]
        peer_t += run(["skopeo", "copy", "-q", *peer.push_options,
                       "oci:model-unpacked/oci:registry.example.com/models/order-accuracy:1.0",
                       f"docker://{peer.host}/registry.example.com/models/order-accuracy:1.0"])[0]
    shutil.rmtree(WORK / "model-peer", ignore_errors=True)
    shutil.rmtree(WORK / "model-unpacked", ignore_errors=True)
    (WORK / "model.bundle.tar").unlink()
    return {"import": t, "floor": floor, "durable_floor": durable, "cold": cold, "rss": rss, "skopeo": peer_t}


def measure_large(bundler: list[str]) -> dict[str, float | bool]:
    """A 9 GiB model file packed `as: image` (one tar layer past ustar's 8 GiB field, pax), built
    into FAT32-sized parts; build, verify and import (cold cache) with their peak RSS; read back from
    the site registry through Python's tarfile (an independent reader of the layer) with its sha256."""
    large = WORK / "large"
    shutil.rmtree(large, ignore_errors=True)
    (large / "model").mkdir(parents=True)
    expected = write_model(large / "model" / "weights.bin", LARGE_BYTES)
    repository = "registry.example.com/models/order-accuracy-fp16"
    (large / "large.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: large, version: 1.0.0}\nspec:\n  artifacts:\n"
        f"    - path: model\n      repository: {repository}\n      tag: \"1.0\"\n      as: image\n")
    out: dict[str, float | bool] = {}
    os.sync()  # the build's floor: the model read once, hashed, written once (warm, as the build reads it)
    out["build_floor"] = single_pass("model/weights.bin", large)
    os.sync()
    out["build"], out["rss_build"] = run([*bundler, "build", "large.yaml", "-o", "large.bundle.tar", "--key",
                                          str(WORK / "release.key"), "--split-size", LARGE_SPLIT], cwd=large)
    (large / "model" / "weights.bin").unlink()
    parts = sorted(large.glob("large.bundle.tar.part-*"))
    out["parts"] = len(parts)
    out["largest_part"] = max(p.stat().st_size for p in parts)
    index = large / "large.bundle.tar.parts.json"
    out["cold"] = drop_caches()
    out["verify"], out["rss_verify"] = run([*bundler, "verify", str(index), "--key", str(WORK / "release.pub")])
    # the floors of this import: the parts read once, hashed, written once (past the dirty cache)
    out["floor"], out["durable_floor"] = cold_floors("large.bundle.tar.part-*", large)
    with default_site(bundler, "large-site") as site:
        drop_caches()
        out["import"], out["rss_import"] = run([*bundler, "import", str(index), "--site", "large-site"])
        for part in parts:
            part.unlink()
        site_repository = ImageReference.parse(f"{repository}:1.0").site_repository
        ca, token = site.token_for_pull(site_repository)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.oci.image.manifest.v1+json"}
        manifest = requests.get(f"{site.url}/v2/{site_repository}/manifests/1.0", headers=headers, verify=ca,
                                timeout=30).json()
        [layer] = manifest["layers"]
        start = time.perf_counter()
        with requests.get(f"{site.url}/v2/{site_repository}/blobs/{layer['digest']}", headers=headers, verify=ca,
                          stream=True, timeout=60) as response, \
                tarfile.open(fileobj=response.raw, mode="r|") as tar:
            read = hashlib.sha256()
            for member in tar:
                if member.isfile():
                    extracted = tar.extractfile(member)
                    assert extracted is not None
                    while data := extracted.read(1 << 20):
                        read.update(data)
                    out["member_size"] = member.size
        out["read_back"] = time.perf_counter() - start
        out["intact"] = read.hexdigest() == expected and out["member_size"] == LARGE_BYTES
    shutil.rmtree(WORK / "large-site", ignore_errors=True)
    shutil.rmtree(large, ignore_errors=True)
    return out


DOWNLOAD_ROUNDS = 5


def curl_seconds(url: str, *options: str) -> float:
    """Seconds of one download of `url` by curl (the bytes discarded)."""
    start = time.perf_counter()
    subprocess.run(["curl", "-sf", "-o", "/dev/null", *options, url], check=True)
    return time.perf_counter() - start


def measure_download(bundler: list[str], site: DefaultSite) -> dict[str, float]:
    """A 200 MB payload approved for line-1, imported into `site`; curl with an enrolled client's
    token against a static HTTPS server and a plain HTTP one serving the same file."""
    served = WORK / "served"
    shutil.rmtree(served, ignore_errors=True)
    served.mkdir()
    with open(served / "payload.bin", "wb") as f:
        for _ in range(PAYLOAD_BYTES // MB):
            f.write(os.urandom(MB))
    (WORK / "payload.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: payload, "
                                       "version: 1.0.0}\nspec:\n  updates:\n    - path: served/payload.bin\n"
                                       "      approve: [line-1]\n")
    run([*bundler, "build", "payload.yaml", "-o", "payload.bundle.tar", "--key", "release.key"])
    run([*bundler, "import", "payload.bundle.tar", "--site", str(site.directory)])
    enrolled = subprocess.run([*bundler, "updates", "enroll", "bench-1", "--group", "line-1", "--site",
                               str(site.directory), "--json"], check=True, capture_output=True, text=True, cwd=WORK)
    token = json.loads(enrolled.stdout)["token"]
    ca = str(site.directory / "pki" / "ca.pem")
    http = json.loads(subprocess.run([*bundler, "site", "status", str(site.directory), "--json"],
                                     capture_output=True, text=True, cwd=WORK).stdout)["services"]["updates"]["url"]
    tls_port, plain_port = free_port(), free_port()
    pki = site.directory / "pki"
    peers = [subprocess.Popen(["openssl", "s_server", "-WWW", "-quiet", "-key", str(pki / "server.key"), "-cert",
                               str(pki / "server.pem"), "-accept", f"127.0.0.1:{tls_port}"], cwd=served,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
             subprocess.Popen(["busybox", "httpd", "-f", "-p", f"127.0.0.1:{plain_port}", "-h", str(served)])]
    downloads: dict[str, list[float]] = {"site": [], "static_tls": [], "plain_http": []}
    try:
        os.sync()  # the payload and its bundle just written: their writeback not in anyone's time
        time.sleep(1)
        for _ in range(DOWNLOAD_ROUNDS):  # alternated: this machine's speed drifts within a minute
            downloads["site"].append(curl_seconds(f"{http}files/payload.bin", "--cacert", ca,
                                                  "-H", f"Authorization: Bearer {token}"))
            downloads["static_tls"].append(curl_seconds(f"https://127.0.0.1:{tls_port}/payload.bin", "--cacert", ca))
            downloads["plain_http"].append(curl_seconds(f"http://127.0.0.1:{plain_port}/payload.bin"))
    finally:
        for peer in peers:
            peer.terminate()
            peer.wait()
    shutil.rmtree(served, ignore_errors=True)
    return {name: min(seconds) for name, seconds in downloads.items()}


REPORTS = 200  # a Windows client's reports, 1,000 step results each


def measure_reports(bundler: list[str], site: DefaultSite) -> dict[str, float]:
    """One Windows client sends REPORTS reports of 1,000 results each (its payload's among digests the
    site never had): a report, its plan and `updates status`, after the first report and after the
    last (`updates status` the best of three, a plan of thirty: it takes a millisecond or two; a
    report the median of eleven). Issue 35: within 1.5x."""
    (WORK / "agent.msi").write_bytes(os.urandom(100_000))
    (WORK / "win.yaml").write_text("apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: win, version: 1.0.0}\n"
                                   "spec:\n  updates:\n    - path: agent.msi\n      name: agent\n"
                                   "      approve: [line-1]\n      windows: {kb: KB0000001}\n")
    run([*bundler, "build", "win.yaml", "-o", "win.bundle.tar", "--key", "release.key"])
    run([*bundler, "import", "win.bundle.tar", "--site", str(site.directory)])
    run([*bundler, "site", "client", "windows", str(site.directory), "bench-win", "--group", "line-1", "-o",
         "win-client"])
    config = json.loads((WORK / "win-client" / "bundler-client.json").read_text())
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {config['token']}"
    ca = str(site.directory / "pki" / "ca.pem")
    plan_url = f"{config['site']}/updates/api/plan?mode=windows&build=10.0.26100.2033"
    (agent,) = session.get(plan_url, verify=ca, timeout=30).json()["steps"]

    def report(n: int) -> float:
        results = [{"sha256": hashlib.sha256(f"{n}-{i}".encode()).hexdigest(), "status": "failed", "exit_code": 1}
                   for i in range(999)] + [{"sha256": agent["sha256"], "status": "failed", "exit_code": 1}]
        start = time.perf_counter()
        answer = session.post(f"{config['site']}/updates/api/report", json={"results": results}, verify=ca,
                              timeout=60)
        assert answer.status_code == 200, answer.text
        return time.perf_counter() - start

    def best(action: Callable[[], object], rounds: int = 3) -> float:
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
        return min(times)

    def plan() -> object:
        return session.get(plan_url, verify=ca, timeout=30).json()

    def status() -> object:
        return run([*bundler, "updates", "status", "--site", str(site.directory)])

    first = sorted(report(n) for n in range(11))[5]
    out = {"report_first": first, "plan_first": best(plan, 30), "status_first": best(status)}
    for n in range(11, REPORTS - 11):
        report(n)
    out["report_last"] = sorted(report(n) for n in range(REPORTS - 11, REPORTS))[5]
    out.update(plan_last=best(plan, 30), status_last=best(status),
               record=(site.directory / "updates" / "reports" / "bench-win.json").stat().st_size)
    return out


PULL_ROUNDS = 2


def pull_all(skopeo: list[str], host: str, refs: list[str]) -> float:
    """Seconds to pull every image from the registry at `host` into an OCI layout, one skopeo each,
    after a sync (the layout of the pull before is deleted, its writeback not in this one's time)."""
    shutil.rmtree(WORK / "pulled", ignore_errors=True)
    os.sync()
    seconds = run_all([[*skopeo, f"docker://{host}/{site_repo(ref)}", f"oci:{WORK / 'pulled'}:{i}"]
                       for i, ref in enumerate(refs)])
    shutil.rmtree(WORK / "pulled", ignore_errors=True)
    return seconds


def site_repo(ref: str) -> str:
    """Where bundler import puts an image on the site: `<source host>/<path>:<tag>`."""
    parsed = ImageReference.parse(ref)
    return f"{parsed.site_repository}:{parsed.tag}"


@contextlib.contextmanager
def own_tls_listener(site: DefaultSite) -> Iterator[str]:
    """The site's registry as it ran before the front held its port: a second Distribution process on
    the same storage, with the site's certificate and token configuration, listening with its own TLS
    on a free loopback port. Yields host:port."""
    import yaml

    config = yaml.safe_load((site.directory / "registry" / "config.yml").read_text())
    address = f"127.0.0.1:{free_port()}"
    pki = site.directory / "pki"
    config["http"] = {"addr": address, "net": "tcp", "tls": {"certificate": str(pki / "server.pem"),
                                                             "key": str(pki / "server.key")}}
    path = WORK / "own-tls.yml"
    path.write_text(yaml.safe_dump(config))
    binary = shutil.which("docker-registry") or shutil.which("registry") or "docker-registry"
    process = subprocess.Popen([binary, "serve", str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answers(f"https://{address}", process=process, ca_file=pki / "ca.pem")
        yield address
    finally:
        process.terminate()
        process.wait(10)


def measure_front(site: DefaultSite, pull: list[str], refs: list[str]) -> tuple[list[float], list[float]]:
    """Pulls through the front and from the registry's own TLS listener, alternated PULL_ROUNDS times."""
    front, own = [], []
    with own_tls_listener(site) as address:
        for _ in range(PULL_ROUNDS):
            front.append(pull_all([*pull, *site.pull_options], site.host, refs))
            own.append(pull_all([*pull, *site.pull_options], address, refs))
    return front, own


NODES = 23  # a store's devices
NODE_IMAGES = 6
MORNING_ROUNDS = 3


def morning(host: str, site: DefaultSite, refs: list[str], nodes: int) -> tuple[float, int, list[str]]:
    """`nodes` processes, each pulling NODE_IMAGES images (devtools/morning.py) from `host` at once:
    wall seconds until the last is done, bytes fetched, the failures."""
    ca, creds = str(site.directory / "pki" / "ca.pem"), str(site.directory / "credentials.json")
    start = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "devtools.morning", host, ca, creds,
                               *(site_repo(refs[(i + j) % len(refs)]) for j in range(NODE_IMAGES))],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT) for i in range(nodes)]
    reports = [json.loads(proc.communicate()[0] or '{"ok": false, "error": "no report", "bytes": 0}')
               for proc in procs]
    seconds = time.perf_counter() - start
    return seconds, sum(r["bytes"] for r in reports), [r["error"] for r in reports if not r["ok"]]


@dataclass
class Morning:
    """Seconds of each round (the crowd and one node, from the site and from the registry's own TLS
    listener), the bytes a crowd fetched, and what failed."""
    times: dict[str, list[float]]
    fetched: int = 0
    failures: list[str] = field(default_factory=list)


def measure_morning(site: DefaultSite, refs: list[str]) -> Morning:
    """NODES nodes pulling at once, and one node alone, from the default site and from the same registry
    with its own TLS listener (same certificate, same token server), alternated MORNING_ROUNDS times."""
    out = Morning({"site": [], "own": [], "one_site": [], "one_own": []})
    with own_tls_listener(site) as own:
        for _ in range(MORNING_ROUNDS):
            for name, host in (("site", site.host), ("own", own)):
                seconds, out.fetched, failed = morning(host, site, refs, NODES)
                out.times[name].append(seconds)
                out.failures += failed
                out.times[f"one_{name}"].append(morning(host, site, refs, 1)[0])
    if out.failures:
        print("morning failures:", out.failures[:5])
    return out


def versus(ours: list[float], theirs: list[float], goal: float) -> str:
    """`A s vs B s: Rx (goal <= Gx: met)` of the best of each."""
    ratio = min(ours) / min(theirs)
    return (f"{min(ours):.2f} s vs {min(theirs):.2f} s: {ratio:.2f}x "
            f"(goal <= {goal}x: {'met' if ratio <= goal else 'NOT MET'})")


def print_morning(m: Morning) -> None:
    t = m.times
    print(f"morning: {NODES} nodes pulling {NODE_IMAGES} images each at once ({m.fetched / MB:.0f} MB in all), "
          f"the default site vs the registry's own TLS listener: {versus(t['site'], t['own'], 1.15)}, "
          f"{len(m.failures)} failures; one node alone: {versus(t['one_site'], t['one_own'], 1.1)}; all runs (s)",
          {k: [f"{s:.2f}" for s in v] for k, v in t.items()})


def print_parity(p: dict[str, list[float]]) -> None:
    print(f"parity: a build in {PARITY_PARTS} parts with --parity 2 vs without: "
          f"{versus(p['parity'], p['plain'], 1.15)}; an import rebuilding 1 of the {PARITY_PARTS} parts vs the "
          f"whole set: {versus(p['rebuilt'], p['whole'], 1.3)}; with its bytes flipped instead (found when a "
          f"payload fails, then every part hashed once and the import run again): "
          f"{min(p['flipped']) / min(p['whole']):.2f}x (no goal); all runs (s)",
          {name: [f"{t:.2f}" for t in times] for name, times in p.items()})


def print_reports(r: dict[str, float]) -> None:
    ratios = [r[f"{what}_last"] / r[f"{what}_first"] for what in ("report", "plan", "status")]
    print(f"reports: after {REPORTS} reports of 1,000 results from one client, a report took "
          f"{r['report_last'] * 1000:.1f} ms (the first {r['report_first'] * 1000:.1f} ms), its plan "
          f"{r['plan_last'] * 1000:.1f} ms ({r['plan_first'] * 1000:.1f} ms), updates status "
          f"{r['status_last']:.2f} s ({r['status_first']:.2f} s): {', '.join(f'{x:.2f}x' for x in ratios)} "
          f"(goal <= 1.5x: {'met' if max(ratios) <= 1.5 else 'NOT MET'}); the client's record "
          f"{r['record']:.0f} bytes")


def fresh_registry(name: str) -> RegistryProcess:
    shutil.rmtree(WORK / name, ignore_errors=True)
    return start_registry(WORK / name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="repetitions; the best time counts (default 2)")
    parser.add_argument("--push", metavar="HOST", help=argparse.SUPPRESS)
    parser.add_argument("--push-extra", metavar="HOST", help=argparse.SUPPRESS)
    parser.add_argument("--write-model", nargs=2, metavar=("PATH", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--only-front", action="store_true",
                        help="only the front row: pulls through the front vs the registry's own TLS listener")
    parser.add_argument("--only-build", action="store_true",
                        help="only the build against its floor (every source blob read once, hashed, written once)")
    parser.add_argument("--only-morning", action="store_true",
                        help="only the morning row: 23 nodes pulling 6 images each at once, and one alone")
    parser.add_argument("--only-parity", action="store_true",
                        help="only the parity rows: a build with --parity 2, an import rebuilding 1 of 10 parts")
    parser.add_argument("--only-reports", action="store_true",
                        help="only the reports row: 200 reports of 1,000 results, the last vs the first")
    args = parser.parse_args()
    if args.push:
        print(json.dumps(push_set(RegistryClient(args.push))))
        return
    if args.push_extra:
        print(push_extra_layer(RegistryClient(args.push_extra)))
        return
    if args.write_model:
        print(_write_model(Path(args.write_model[0]), int(args.write_model[1])))
        return
    if shutil.which("skopeo") is None:
        sys.exit("skopeo is needed for the benchmark (apt-get install skopeo)")
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir()
    # byte-compiled, as `pip install` leaves it: with PYTHONDONTWRITEBYTECODE set (as on these
    # machines) every run would otherwise compile bundler's sources again (0.15 s a command here)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "bundler")], check=True,
                   stdout=subprocess.DEVNULL)
    bundler = [sys.executable, "-m", "bundler.cli"]
    skopeo = ["skopeo", "copy", "--all", "-q", "--src-tls-verify=false", "--dest-tls-verify=false"]
    skopeo_to_site = ["skopeo", "copy", "--all", "-q"]
    pull = ["skopeo", "copy", "--all", "-q"]

    source = fresh_registry("source")
    # Pushed from a child process: a forked child starts with its parent's RSS, and ru_maxrss
    # remembers it, so the parent stays small for the peak-memory figures to be bundler's own.
    pushed = subprocess.run([sys.executable, "-m", "devtools.bench", "--push", source.address],
                            check=True, capture_output=True, text=True, cwd=ROOT)
    refs = json.loads(pushed.stdout)
    (WORK / "profile.yaml").write_text(
        "apiVersion: bundler/v1\nkind: Profile\nmetadata: {name: bench, version: 1.0.0}\nspec:\n  images:\n"
        + "".join(f"    - {ref}\n" for ref in refs))
    print(f"10 images pushed to {source.url}; benchmarking ({args.runs} runs each, best counts)", flush=True)

    run([*bundler, "keygen", "release"])
    run([*bundler, "keygen", "security"])
    if args.only_reports:
        with default_site(bundler, "site-dir") as site:
            print_reports(measure_reports(bundler, site))
        source.stop()
        return
    if args.only_build:
        builds, floor = [], []
        for _ in range(FLOOR_RUNS):
            os.sync()
            builds.append(run([*bundler, "build", "profile.yaml", "-o", "bench.bundle.tar", "--key", "release.key"])[0])
            floor.append(source_floor(source.address, refs))
        source.stop()
        print(f"build {min(builds):.2f} s vs its floor (every source blob read once, hashed, written once) "
              f"{min(floor):.2f} s: {min(builds) / min(floor):.2f}x (goal <= 1.3x); all runs",
              [f"{t:.2f}" for t in builds], "vs", [f"{t:.2f}" for t in floor])
        return
    if args.only_morning:
        run([*bundler, "build", "profile.yaml", "-o", "bench.bundle.tar", "--key", "release.key"])
        with default_site(bundler, "site-dir") as site:
            run([*bundler, "import", "bench.bundle.tar", "--site", "site-dir"])
            print_morning(measure_morning(site, refs))
        source.stop()
        return
    if args.only_parity:
        run([*bundler, "build", "profile.yaml", "-o", "bench.bundle.tar", "--key", "release.key"])
        print_parity(measure_parity(bundler))
        source.stop()
        return
    if args.only_front:
        run([*bundler, "build", "profile.yaml", "-o", "bench.bundle.tar", "--key", "release.key"])
        with default_site(bundler, "site-dir") as site:
            run([*bundler, "import", "bench.bundle.tar", "--site", "site-dir"])
            front: list[float] = []
            own: list[float] = []
            for _ in range(args.runs):
                more = measure_front(site, pull, refs)
                front, own = front + more[0], own + more[1]
        source.stop()
        print(f"front {min(front):.2f}s vs the registry's own TLS listener {min(own):.2f}s: "
              f"{min(front) / min(own):.2f}x (goal <= 1.1x); all runs", [f"{t:.2f}" for t in front], "vs",
              [f"{t:.2f}" for t in own])
        return
    build_b, build_s, imp_b, imp_s, re_b, re_s, plain_b, pull_site, pull_plain, rss_build, rss_import = (
        [] for _ in range(11))
    build_floor: list[float] = []
    per_request_site: list[float] = []
    read_ratio: list[float] = []
    per_request_plain: list[float] = []
    downloads: list[dict[str, float]] = []
    pull_front: list[float] = []
    pull_own: list[float] = []
    reports: dict[str, float] = {}
    morning_figures: Morning | None = None
    for _ in range(args.runs):
        (WORK / "bench.bundle.tar").unlink(missing_ok=True)
        t, rss = run([*bundler, "build", "profile.yaml", "-o", "bench.bundle.tar", "--key", "release.key"])
        build_b.append(t)
        rss_build.append(rss)

        shutil.rmtree(WORK / "layout", ignore_errors=True)
        (WORK / "layout.tar").unlink(missing_ok=True)
        t = run_all([[*skopeo, f"docker://{ref}", f"oci:layout:{ref}"] for ref in refs])
        t += run(["tar", "cf", "layout.tar", "-C", "layout", "."])[0]
        build_s.append(t)
        build_floor.append(source_floor(source.address, refs))

        with default_site(bundler, "site-dir") as site:
            t, rss = run([*bundler, "import", "bench.bundle.tar", "--site", "site-dir", "--json"],
                         output=WORK / "import.json")
            imp_b.append(t)
            read_ratio.append(json.loads((WORK / "import.json").read_text())["bundle_bytes_read"]
                              / (WORK / "bench.bundle.tar").stat().st_size)
            rss_import.append(rss)
            t, rss = run([*bundler, "import", "bench.bundle.tar", "--site", "site-dir"])
            re_b.append(t)
            rss_import.append(rss)
            per_request_site.append(per_request(site.url, site.token_for_pull()))
            downloads.append(measure_download(bundler, site))
            if not reports:
                reports = measure_reports(bundler, site)
            if morning_figures is None:
                morning_figures = measure_morning(site, refs)

            plain = fresh_registry("plain")
            shutil.rmtree(WORK / "plain-dir", ignore_errors=True)
            run([*bundler, "site", "init", "--as-root", "plain-dir", "--registry", plain.url,
                 "--trust-key", "release.pub",
                 "--http-listen", f"127.0.0.1:{free_port()}"])
            plain_b.append(run([*bundler, "import", "bench.bundle.tar", "--site", "plain-dir"])[0])
            per_request_plain.append(per_request(plain.url, None))
            for _ in range(PULL_ROUNDS):  # alternated, both registries up: the same minute for each
                pull_site.append(pull_all([*pull, *site.pull_options], site.host, refs))
                pull_plain.append(pull_all([*pull, "--src-tls-verify=false"], plain.address, refs))
            plain.stop()
            more = measure_front(site, pull, refs)
            pull_front, pull_own = pull_front + more[0], pull_own + more[1]

        with default_site(bundler, "peer-dir") as peer:
            shutil.rmtree(WORK / "unpacked", ignore_errors=True)
            (WORK / "unpacked").mkdir()
            copies = [[*skopeo_to_site, *peer.push_options, f"oci:unpacked:{ref}",
                       f"docker://{peer.host}/{ref.split('/', 1)[1]}"] for ref in refs]
            t = run(["tar", "xf", "layout.tar", "-C", "unpacked"])[0] + run_all(copies)
            imp_s.append(t)
            re_s.append(run_all(copies))
    resume = measure_resume(bundler)
    floors = measure_floor(bundler)
    parity = measure_parity(bundler)

    # a delta: one image gains a 22 MB layer; v2 --since v1 against the full v2
    pushed = subprocess.run([sys.executable, "-m", "devtools.bench", "--push-extra", source.address],
                            check=True, capture_output=True, text=True, cwd=ROOT)
    new_bytes = int(pushed.stdout)
    (WORK / "profile-2.yaml").write_text((WORK / "profile.yaml").read_text().replace("version: 1.0.0",
                                                                                    "version: 2.0.0"))
    run([*bundler, "build", "profile-2.yaml", "-o", "v2-delta.bundle.tar", "--since", "bench.bundle.tar"])
    run([*bundler, "build", "profile-2.yaml", "-o", "v2-full.bundle.tar"])
    delta_size = (WORK / "v2-delta.bundle.tar").stat().st_size
    full_size = (WORK / "v2-full.bundle.tar").stat().st_size
    source.stop()

    one_gigabyte_bundle(WORK / "big.bundle.tar")
    verify_time = run([*bundler, "verify", "big.bundle.tar", "--key", "release.pub"])[0]
    sign_time, sign_rss = run([*bundler, "sign", "big.bundle.tar", "--key", "security.key"])
    (WORK / "big.bundle.tar").unlink()
    model = measure_model(bundler)  # after sign: peak RSS is the children's highest so far
    large = measure_large(bundler)

    bundle_size = (WORK / "bench.bundle.tar").stat().st_size
    rows = [("build", min(build_b), min(build_s), 1.0, "skopeo"),
            ("import", min(imp_b), min(imp_s), 0.6, "skopeo"),
            ("re-import", min(re_b), min(re_s), 1.0, "skopeo"),
            ("build/floor", min(build_b), min(build_floor), 1.3, "every source blob read once + sha256 + write once"),
            ("floor", min(floors.imports), min(floors.page_cache), 1.5, "read + sha256 + write once, page cache"),
            ("floor/sync", min(floors.imports), min(floors.durable), 1.5, "read + sha256 + write once, on the disk"),
            ("site/plain", min(imp_b), min(plain_b), 1.3, "plain"),
            ("pull", min(pull_site), min(pull_plain), 1.3, "plain"),
            ("front", min(pull_front), min(pull_own), 1.1, "the registry's own TLS listener"),
            ("download", min(d["site"] for d in downloads), min(d["static_tls"] for d in downloads), 1.25,
             "static HTTPS server")]
    print(f"\n{'':11} {'bundler':>9} {'peer':>9} {'ratio':>7} {'goal':>7}")
    for name, ours, theirs, goal, peer_name in rows:
        ratio = ours / theirs
        verdict = "met" if ratio <= goal else "NOT MET"
        print(f"{name:11} {ours:8.2f}s {theirs:8.2f}s {ratio:6.2f}x {goal:5.2f}x {verdict} (vs {peer_name})")
    print(f"import read {max(read_ratio):.3f}x the bundle's bytes from the bundle file (goal <= 1.05x; "
          "each payload byte once: hashed as it streams to the registry, the update cache or git)")
    print(f"per request: an authenticated GET /v2/ on the default site (bearer token, TLS, keep-alive) "
          f"{min(per_request_site) * 1000:.2f} ms, on a plain registry {min(per_request_plain) * 1000:.2f} ms "
          "(an htpasswd registry checks a bcrypt hash per request: about 250 ms at cost 12)")
    print("  import, re-import: into the default site (TLS, token auth) vs skopeo into the same kind of site;")
    print("  site/plain: bundler's import into the default site vs into a plain registry;")
    print("  pull: skopeo pulling all 10 images from the default site vs from a plain registry")
    print(f"  download: curl of a 200 MB approved payload from the site (token, nginx over TLS) vs from "
          f"`openssl s_server -WWW`; over plain HTTP (busybox httpd, no TLS) it took "
          f"{min(d['plain_http'] for d in downloads):.2f} s: TLS's own cost on this machine")
    peak = max(rss_build + rss_import)
    print(f"peak RSS: build {max(rss_build) / 2**20:.0f} MiB, import {max(rss_import) / 2**20:.0f} MiB "
          f"(goal < 200 MiB: {'met' if peak < 200 * 2**20 else 'NOT MET'})")
    print(f"bundle: {bundle_size / MB:.1f} MB for 310 MB of unique layers (skopeo's tar: "
          f"{(WORK / 'layout.tar').stat().st_size / MB:.1f} MB)")
    print(f"delta: v2 --since v1 is {delta_size / MB:.1f} MB for {new_bytes / MB:.1f} MB of new layer "
          f"({delta_size / new_bytes:.3f}x the new bytes); the full v2 is {full_size / MB:.1f} MB")
    print(f"resume (default site): an import killed when {resume['stored_before_kill'] / MB:.0f} MB had reached "
          f"the registry re-ran in {resume['resume_s']:.2f} s sending {resume['resent'] / MB:.1f} MB "
          f"(a whole import sends {resume['full_bytes'] / MB:.1f} MB in {min(imp_b):.2f} s)")
    print(f"model: a {MODEL_BYTES >> 30} GiB single-file artifact imported in {model['import']:.2f} s, the floor "
          f"(read + sha256 + write once) {model['floor']:.2f} s: {model['import'] / model['floor']:.2f}x, synced "
          f"too {model['durable_floor']:.2f} s: {model['import'] / model['durable_floor']:.2f}x "
          f"(goal <= 1.5x; {'cold' if model['cold'] else 'warm'} cache; peak RSS {model['rss'] / 2**20:.0f} MiB); "
          f"skopeo (tar xf, then skopeo copy into the same kind of site) {model['skopeo']:.2f} s: "
          f"{model['import'] / model['skopeo']:.2f}x skopeo")
    peak_large = max(large["rss_build"], large["rss_verify"], large["rss_import"])
    print(f"large: a {LARGE_BYTES >> 30} GiB model file packed as an image, in {large['parts']} FAT32 parts "
          f"(largest {large['largest_part']:,} bytes): build {large['build']:.1f} s against its floor (the file read, "
          f"hashed, written once) {large['build_floor']:.1f} s: {large['build'] / large['build_floor']:.2f}x (goal "
          f"<= 1.3x: {'met' if large['build'] <= 1.3 * large['build_floor'] else 'NOT MET'}), verify "
          f"{large['verify']:.1f} s, "
          f"import {large['import']:.1f} s ({'cold' if large['cold'] else 'warm'} cache) against its floor "
          f"{large['floor']:.1f} s: {large['import'] / large['floor']:.2f}x (synced too "
          f"{large['durable_floor']:.1f} s: {large['import'] / large['durable_floor']:.2f}x); peak RSS build "
          f"{large['rss_build'] / 2**20:.0f} MiB, verify {large['rss_verify'] / 2**20:.0f} MiB, import "
          f"{large['rss_import'] / 2**20:.0f} MiB (goal < 200 MiB: {'met' if peak_large < 200 << 20 else 'NOT MET'}); "
          f"read back through tarfile from the site in {large['read_back']:.1f} s: "
          f"{'intact (size and sha256)' if large['intact'] else 'NOT INTACT'}")
    print_reports(reports)
    assert morning_figures is not None
    print_morning(morning_figures)
    print_parity(parity)
    print(f"sign: a countersignature on a {1 << 30:,} byte bundle took {sign_time:.2f} s, verifying it "
          f"{verify_time:.2f} s ({sign_time / verify_time:.2f}x: sign checks every payload first; "
          f"peak RSS {sign_rss / 2**20:.0f} MiB)")
    print("all runs (s): build", [f"{t:.2f}" for t in build_b], "vs", [f"{t:.2f}" for t in build_s],
          "| import", [f"{t:.2f}" for t in imp_b], "vs", [f"{t:.2f}" for t in imp_s],
          "| re-import", [f"{t:.2f}" for t in re_b], "vs", [f"{t:.2f}" for t in re_s],
          "| plain import", [f"{t:.2f}" for t in plain_b],
          "| pull", [f"{t:.2f}" for t in pull_site], "vs", [f"{t:.2f}" for t in pull_plain],
          "| front", [f"{t:.2f}" for t in pull_front], "vs", [f"{t:.2f}" for t in pull_own],
          "| import", [f"{t:.2f}" for t in floors.imports], "vs its floor", [f"{t:.2f}" for t in floors.page_cache],
          "and synced", [f"{t:.2f}" for t in floors.durable])


if __name__ == "__main__":
    main()
