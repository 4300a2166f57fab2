"""A store's morning for `make bench`: one node of a cluster pulling its images as containerd does (a
token per repository from the registry's challenge, the manifest, then the config and every layer,
each checked against its digest and dropped). Run as a process of its own, one per node:

    python -m devtools.morning HOST CA CREDENTIALS.json REPO:TAG...

prints one JSON line: whether every image came whole, the bytes fetched, the error if any."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import requests

ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


class Node:
    def __init__(self, host: str, ca: str, username: str, password: str) -> None:
        self.base, self.auth = f"https://{host}/v2", (username, password)
        self.session, self.ca = requests.Session(), ca  # verify= on each request: requests lets REQUESTS_CA_BUNDLE
        self.fetched = 0                               # override a session's own

    def token(self, challenge: str) -> str:
        fields = dict(part.split("=", 1) for part in challenge.removeprefix("Bearer ").split(","))
        realm = fields.pop("realm").strip('"')
        r = self.session.get(realm, params={k: v.strip('"') for k, v in fields.items()}, auth=self.auth,
                             verify=self.ca, timeout=30)
        r.raise_for_status()
        return str(r.json()["token"])

    def get(self, url: str, headers: dict[str, str], stream: bool = False) -> requests.Response:
        r = self.session.get(url, headers=headers, stream=stream, verify=self.ca, timeout=60)
        if r.status_code == 401:
            headers["Authorization"] = f"Bearer {self.token(r.headers['WWW-Authenticate'])}"
            r = self.session.get(url, headers=headers, stream=stream, verify=self.ca, timeout=60)
        r.raise_for_status()
        return r

    def blob(self, repository: str, digest: str, headers: dict[str, str]) -> bytes:
        hasher, body = hashlib.sha256(), bytearray()
        with self.get(f"{self.base}/{repository}/blobs/{digest}", headers, stream=True) as r:
            for chunk in r.iter_content(1 << 20):
                hasher.update(chunk)
                self.fetched += len(chunk)
                if len(body) < 1 << 20:
                    body += chunk
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise ValueError(f"{repository}@{digest}: the bytes have another digest")
        return bytes(body)

    def pull(self, reference: str) -> None:
        repository, tag = reference.rsplit(":", 1)
        headers = {"Accept": ACCEPT}
        manifest = self.get(f"{self.base}/{repository}/manifests/{tag}", headers).json()
        if "manifests" in manifest:  # an index: the first platform's manifest
            digest = manifest["manifests"][0]["digest"]
            manifest = self.get(f"{self.base}/{repository}/manifests/{digest}", headers).json()
        for descriptor in [manifest["config"], *manifest["layers"]]:
            self.blob(repository, descriptor["digest"], headers)


def main() -> None:
    host, ca, credentials, *references = sys.argv[1:]
    account = json.loads(Path(credentials).read_text())
    node = Node(host, ca, account["username"], account["password"])
    try:
        for reference in references:
            node.pull(reference)
        print(json.dumps({"ok": True, "bytes": node.fetched}))
    except (requests.RequestException, ValueError, KeyError) as exc:
        print(json.dumps({"ok": False, "bytes": node.fetched, "error": str(exc)[:300]}))


if __name__ == "__main__":
    main()
