"""Profiles: good ones parse to what they say; bad ones fail with file:line and a clear reason."""

from __future__ import annotations

import datetime as dt

import pytest

from bundler.errors import ProfileError
from bundler.kinds import KINDS
from bundler.oci.reference import DaemonReference, ImageReference
from bundler.profile import Profile
from bundler.profile import parse_profile as parse_with


def parse_profile(text: str, path: str = "<profile>") -> Profile:
    return parse_with(text, path, kinds=KINDS)  # the registered kinds, as build parses them


HEAD = "apiVersion: bundler/v1\nkind: Profile\nmetadata:\n  name: edge\n  version: 1.4.0\nspec:\n"


def test_a_full_profile_parses() -> None:
    profile = parse_profile(HEAD + """\
  registries:
    - host: registry.example.com:5000
      usernameEnv: REG_USER
      passwordEnv: REG_PASS
      plainHttp: false
  images:
    - nginx
    - ref: quay.io/org/multi:3.0
      platforms: [linux/amd64, linux/arm64/v8]
    - docker-daemon:myapp:dev
    - ghcr.io/org/app:2.1@sha256:""" + "a" * 64 + "\n", "p.yaml")
    assert (profile.name, profile.version) == ("edge", "1.4.0")
    assert profile.items("images")[0].ref == ImageReference("docker.io", "library/nginx", "latest")
    assert profile.items("images")[1].platforms == ("linux/amd64", "linux/arm64/v8")
    assert isinstance(profile.items("images")[2].ref, DaemonReference)
    assert profile.items("images")[3].ref == ImageReference("ghcr.io", "org/app", "2.1", "sha256:" + "a" * 64)
    registry = profile.registry("registry.example.com:5000")
    assert registry is not None and registry.username_env == "REG_USER" and registry.plain_http is False
    assert profile.digest.startswith("sha256:")


BAD = [
    ("typo in a key", HEAD + "  imagez: [nginx]\n", 7, "unknown key 'imagez' in spec (did you mean 'images'?)"),
    ("unknown top key", HEAD.replace("spec:", "spek:"), 6, "unknown key 'spek'"),
    ("version not semver", HEAD.replace("1.4.0", "1.4.x"), 5, "metadata.version '1.4.x' is not a semantic version"),
    ("version float", HEAD.replace("version: 1.4.0", "version: 1.5"), 5, "must be a non-empty string (quote it)"),
    ("missing name", HEAD.replace("  name: edge\n", ""), 4, "metadata is missing required key 'name'"),
    ("bad name", HEAD.replace("name: edge", "name: Edge Site"), 4, "metadata.name 'Edge Site' is not a valid name"),
    ("wrong apiVersion", HEAD.replace("bundler/v1", "bundler/v2"), 1, "apiVersion must be 'bundler/v1'"),
    ("wrong kind", HEAD.replace("kind: Profile", "kind: Bundle"), 2, "kind must be 'Profile'"),
    ("uppercase repository", HEAD + "  images:\n    - nginx\n    - Nginx:1\n", 9, "repository 'Nginx'"),
    ("bad tag", HEAD + "  images:\n    - nginx:-1\n", 8, "tag '-1'"),
    ("short digest", HEAD + "  images:\n    - nginx@sha256:abc\n", 8, "is not sha256:<64"),
    ("empty ref", HEAD + "  images:\n    - ''\n", 8, "is empty"),
    ("image as a number", HEAD + "  images:\n    - 42\n", 8, "must be an image reference string"),
    ("ref missing", HEAD + "  images:\n    - platforms: [linux/amd64]\n", 8, "missing required key 'ref'"),
    ("bad platform", HEAD + "  images:\n    - ref: nginx\n      platforms: [amd64]\n", 9, "'amd64' is not os/arch"),
    ("platform on daemon", HEAD + "  images:\n    - ref: docker-daemon:app:1\n      platforms: [linux/amd64]\n", 8,
     "platforms cannot be selected for a docker-daemon image"),
    ("daemon by digest", HEAD + "  images:\n    - docker-daemon:app@sha256:" + "a" * 64 + "\n", 8, "not by digest"),
    ("duplicate image", HEAD + "  images:\n    - nginx:1\n    - docker.io/library/nginx:1\n", 9, "listed twice"),
    ("duplicate key", HEAD + "  images: []\n  images: []\n", 8, "duplicate key 'images'"),
    ("images not a list", HEAD + "  images: nginx\n", 7, "spec.images must be a list"),
    ("half credentials", HEAD + "  registries:\n    - host: r.io\n      usernameEnv: U\n", 8,
     "usernameEnv and passwordEnv go together"),
    ("inline password key", HEAD + "  registries:\n    - host: r.io\n      password: hunter2\n", 9,
     "unknown key 'password'"),
    ("bad env name", HEAD + "  registries:\n    - host: r.io\n      usernameEnv: 1X\n      passwordEnv: P\n", 9,
     "not an environment variable name"),
    ("bad expiry", HEAD.replace("  version: 1.4.0\n", "  version: 1.4.0\n  expires: 90 days\n"), 6,
     "metadata.expires '90 days' is not a duration"),
    ("chart with repo and ref", HEAD + "  charts:\n    - {repo: https://c.io, name: a, version: 1.0.0, ref: oci://r.io/a:1}\n",
     8, "needs either repo (with name and version) or ref"),
    ("chart ref not oci", HEAD + "  charts:\n    - ref: r.io/charts/a:1.0.0\n", 8, "must start with oci://"),
    ("chart ref without version", HEAD + "  charts:\n    - ref: oci://r.io/charts/a\n", 8, "needs the chart version"),
    ("chart bad range", HEAD + "  charts:\n    - repo: https://c.io\n      name: a\n      version: '>>1'\n", 10,
     "spec.charts[0].version"),
    ("chart without name", HEAD + "  charts:\n    - {repo: https://c.io, version: 1.0.0}\n", 8,
     "missing required key 'name'"),
    ("chart repo not a url", HEAD + "  charts:\n    - {repo: c.io, name: a, version: 1.0.0}\n", 8,
     "is not an http(s) URL"),
    ("chart images not auto", HEAD + "  charts:\n    - {repo: https://c.io, name: a, version: 1.0.0, images: yes}\n",
     8, "images must be 'auto'"),
    ("policy not a list", HEAD + "  images: [a/b:1]\n  imagePolicy: 3\n", 8, "must be a list of {images, keys}"),
    ("keyless subject not a regexp", HEAD + "  images: [a/b:1]\n  imagePolicy:\n    - images: 'a/*'\n"
     "      keyless: {issuer: https://i.example, subject: '('}\n", 10, "keyless.subject is not a regular expression"),
    ("policy without signers", HEAD + "  images: [a/b:1]\n  imagePolicy:\n    - images: 'a/*'\n", 9,
     "needs keys (cosign public key files) or keyless"),
    ("attestations not a list", HEAD + "  images: [a/b:1]\n  imagePolicy:\n    - images: 'a/*'\n      keys: [k.pub]\n"
     "      attestations: 5\n", 11, "attestations must be a list of {predicateType"),
    ("maxAge on packed files", HEAD + "  artifacts:\n    - {path: ./m, repository: r.io/m, tag: '1', "
     "artifactType: a/b, maxAge: 5d}\n", 8, "maxAge goes with ref"),
    ("not yaml", "apiVersion: [\n", 2, "not valid YAML"),
    ("not a mapping", "- a\n- b\n", 1, "the profile must be a mapping"),
]


@pytest.mark.parametrize(("text", "line", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_profiles_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ProfileError) as caught:
        parse_profile(text, "p.yaml")
    assert caught.value.exit_code == 2
    assert any(problem.startswith(f"p.yaml:{line}: ") and message in problem
               for problem in str(caught.value).splitlines()), str(caught.value)


@pytest.mark.parametrize(("text", "days"), [("72h", 3), ("90d", 90), ("2w", 14)])
def test_expiry_durations(text: str, days: int) -> None:
    profile = parse_profile(HEAD.replace("  version: 1.4.0\n", f"  version: 1.4.0\n  expires: {text}\n"), "p.yaml")
    assert profile.expires == dt.timedelta(days=days)


def test_charts_parse() -> None:
    profile = parse_profile(HEAD + """\
  charts:
    - repo: https://charts.example.com/stable/
      name: nginx
      version: ">=18.0.0 <19.0.0"
      dependencies: true
      images: auto
    - ref: oci://registry.example.com/charts/podinfo:6.5.0
""", "p.yaml")
    repo, oci = profile.items("charts")
    assert (repo.repo, repo.name, str(repo.version), repo.dependencies, repo.images) == (
        "https://charts.example.com/stable", "nginx", ">=18.0.0 <19.0.0", True, True)
    assert oci.ref == ImageReference("registry.example.com", "charts/podinfo", "6.5.0")
    assert not oci.dependencies and not oci.images
