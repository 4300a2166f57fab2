"""The sample image set of the demo and the round-trip tests, pushed to a real registry.

It covers what the round trip must keep: a runnable single-arch Docker image (busybox), two images
sharing a base layer, a multi-arch OCI index with two platforms, and an image known by digest only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bundler.oci.client import RegistryClient
from devtools import images as im


@dataclass
class SampleSet:
    host: str
    refs: dict[str, str] = field(default_factory=dict)  # profile reference -> expected digest
    unique_bytes: int = 0  # every distinct blob and manifest, counted once

    def profile(self, name: str = "demo", version: str = "1.0.0") -> str:
        lines = ["apiVersion: bundler/v1", "kind: Profile", "metadata:", f"  name: {name}",
                 f"  version: {version}", "spec:", "  images:"]
        lines += [f"    - {ref}" for ref in self.refs]
        return "\n".join(lines) + "\n"


def push_samples(client: RegistryClient, message: str = "hello from the site registry") -> SampleSet:
    host = client.host
    samples = SampleSet(host)
    blobs: dict[str, int] = {}

    def track(digest: str, manifest: bytes, layers: list[im.Layer], arch: str = "amd64",
              entrypoint: list[str] | None = None) -> None:
        blobs[digest] = len(manifest)
        for layer in layers:
            blobs[layer.digest] = len(layer.data)
        cfg = im.config(layers, arch, entrypoint)
        blobs[im.sha(cfg)] = len(cfg)

    busybox, entrypoint = im.busybox_layer(message)
    digest, manifest = im.push_image(client, "demo/hello", "1.0", [busybox], entrypoint=entrypoint)
    track(digest, manifest, [busybox], entrypoint=entrypoint)
    samples.refs[f"{host}/demo/hello:1.0"] = digest

    base = im.random_layer(3_000_000, seed=1)
    for name, seed in (("app-a", 2), ("app-b", 3)):
        layers = [base, im.random_layer(1_000_000, seed=seed)]
        digest, manifest = im.push_image(client, f"demo/{name}", "1.0", layers)
        track(digest, manifest, layers)
        samples.refs[f"{host}/demo/{name}:1.0"] = digest

    per_arch = {"amd64": [im.random_layer(700_000, seed=4)], "arm64": [im.random_layer(700_000, seed=5)]}
    index_digest = im.push_index(client, "demo/multi", "2.0", per_arch)
    for arch, layers in per_arch.items():
        digest, manifest = im.push_image(client, "demo/multi", None, layers, arch=arch, oci=True)
        track(digest, manifest, layers, arch)
    index_bytes = client.get_manifest("demo/multi", index_digest)[0]
    blobs[index_digest] = len(index_bytes)
    samples.refs[f"{host}/demo/multi:2.0"] = index_digest

    pinned = [im.random_layer(500_000, seed=6)]
    digest, manifest = im.push_image(client, "demo/pinned", None, pinned)
    track(digest, manifest, pinned)
    samples.refs[f"{host}/demo/pinned@{digest}"] = digest

    samples.unique_bytes = sum(blobs.values())
    return samples
