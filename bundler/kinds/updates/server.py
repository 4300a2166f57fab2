"""The updates kind's site service, behind the site's front: the signed apt and rpm repositories per
group, approved payloads (sent by the front: `X-Accel-Redirect`), the approvals API, and reports
from enrolled clients. A group is a boundary: its paths go to its enrolled clients only (a Bearer
token, or basic auth with the client's name and token), unless the site reads updates anonymously."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from wsgiref.types import StartResponse, WSGIEnvironment

from bundler import names
from bundler.errors import BundlerError
from bundler.jsontypes import Doc, JsonObject
from bundler.kinds.updates.cache import APT_KEY, ASC_KEY, UPDATES_DIR, UpdateCache
from bundler.kinds.updates.clients import Host, StepResult
from bundler.kinds.updates.plan import plan_for
from bundler.kinds.updates.settings import update_settings
from bundler.kinds.updates.windows import AKSEE_VERSION_RE, ARCHES, BUILD_RE
from bundler.site.config import SiteConfig
from bundler.site.front import FrontRule
from bundler.site.http import Route, accel, body_length, json_response, text_response

MAX_REPORT = 1 << 20  # bytes of one client report
PAYLOADS = "/_updates/payloads/"  # the front's internal locations the application redirects downloads to
PUBLISHED = "/_updates/published/"


def front_rules(site: SiteConfig) -> list[FrontRule]:
    """Reports up to MAX_REPORT (with a Content-Length); payloads and published indexes sent by the front."""
    root = site.directory / UPDATES_DIR
    return [FrontRule("/updates/api/report", exact=True, body=f"{MAX_REPORT >> 20}m", posts=True),
            FrontRule(PAYLOADS, files=root / "blobs"), FrontRule(PUBLISHED, files=root / "published")]


class UpdateServer:
    """`/updates/...`."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site

    def route(self) -> Route:
        return Route("updates", self.handle)

    def update_client(self, environ: WSGIEnvironment, cache: UpdateCache) -> tuple[str, str] | bool | None:
        """(client, group) for an enrolled client's token (Bearer, or Basic with the client id as the
        user name: apt's auth.conf, dnf's username/password); None without credentials; False when
        the credentials are not an enrolled client's."""
        header = str(environ.get("HTTP_AUTHORIZATION", ""))
        if header.startswith("Bearer "):
            return cache.clients.client_for(header[7:].strip()) or False
        if header.startswith("Basic "):
            try:
                user, _, token = base64.b64decode(header[6:], validate=True).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            known = cache.clients.client_for(token)
            return known if known is not None and known[0] == user else False
        return None

    def handle(self, environ: WSGIEnvironment, start_response: StartResponse, rest: str) -> Iterable[bytes]:
        cache = UpdateCache(self.site)
        method = environ.get("REQUEST_METHOD", "GET")
        if rest == "api/report" and method == "POST":
            return self.report(environ, start_response, cache)
        if method not in ("GET", "HEAD"):
            return text_response(start_response, "405 Method Not Allowed", "read-only\n")
        parts = rest.split("/")
        if parts[0] == "keys" and len(parts) == 2 and parts[1] in (APT_KEY, ASC_KEY):  # public keys: for anyone
            return _small_file(start_response, cache.root / parts[1])
        known = self.update_client(environ, cache)
        if parts == ["api", "plan"]:  # a Windows client's next steps: its own token only
            return self.plan(environ, start_response, cache, known)
        if known is False or (known is None and not update_settings(self.site).anonymous):
            return _unauthorized(start_response)
        # a group is a boundary: an enrolled client reads its own group only; anonymous readers (a
        # site setting, off by default) read what any group approved
        group = known[1] if isinstance(known, tuple) else None

        def allows(g: str) -> bool:
            return group is None or g == group

        if parts[0] == "api" and len(parts) == 4 and parts[1] == "groups" and parts[3] == "approved":
            if parts[2] not in update_settings(self.site).groups or not allows(parts[2]):
                return text_response(start_response, "404 Not Found", "no such group for this client\n")
            listing: list[Doc] = [{"name": e.name, "kind": e.kind, "file": e.file, "version": e.version, "arch": e.arch,
                        "sha256": e.sha256, "size": e.size, "url": f"/updates/blobs/sha256/{e.sha256}"}
                       for e in cache.catalog.approved(parts[2])]
            return json_response(start_response, "200 OK", {"group": parts[2], "updates": listing})
        # payloads: only approved ones (for the client's group); others are 404
        if parts[:2] == ["blobs", "sha256"] and len(parts) == 3 and re.fullmatch(r"[a-f0-9]{64}", parts[2]):
            if cache.catalog.servable(parts[2], group):
                return _payload(start_response, parts[2])
            return text_response(start_response, "404 Not Found", "no approved update has this digest\n")
        if parts[0] == "files" and len(parts) == 2:
            entry = cache.catalog.newest_approved(parts[1], group)
            if entry is not None:
                return _payload(start_response, entry.sha256)
            return text_response(start_response, "404 Not Found", "no approved update has this file name\n")
        if parts[0] == "apt" and len(parts) == 4 and parts[1] == "pool":  # apt/pool/<sha256>/<file>
            servable = cache.catalog.servable_set(group)
            entry = next((e for e in cache.catalog.entries if e.sha256 == parts[2] and e.file == parts[3]
                          and e.sha256 in servable), None)
            if entry is not None:
                return _payload(start_response, entry.sha256)
        elif all(_SAFE_PART.match(p) and p != ".." for p in parts) and (
                (parts[0] == "apt" and len(parts) > 3 and parts[1] == "dists" and allows(parts[2]))
                or (parts[0] == "rpm" and len(parts) > 2 and allows(parts[1]))) \
                and (cache.root / "published").joinpath(*parts).is_file():
            return accel(start_response, PUBLISHED + "/".join(parts), [])
        return text_response(start_response, "404 Not Found", "not found\n")

    def plan(self, environ: WSGIEnvironment, start_response: StartResponse, cache: UpdateCache,
             known: tuple[str, str] | bool | None) -> Iterable[bytes]:
        """`GET /updates/api/plan?mode=windows|aksee&build=10.0.26100.2033&arch=amd64&aksee=1.9.262.0`:
        the approved payloads this client lacks, in install order, each with its step from the fixed
        table (windows.STEPS); nothing while a restart is pending."""
        if not isinstance(known, tuple):
            return _unauthorized(start_response)
        client, group = known
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(str(environ.get("QUERY_STRING", ""))).items()}
        mode, build, arch, aksee = (query.get("mode", "windows"), query.get("build"), query.get("arch"),
                                    query.get("aksee"))
        if (mode not in ("windows", "aksee") or (build is not None and not BUILD_RE.match(build))
                or (arch is not None and arch not in ARCHES)
                or (aksee is not None and not AKSEE_VERSION_RE.match(aksee))):
            return json_response(start_response, "400 Bad Request", {"error": "mode is windows or aksee; build a "
                                 "Windows build (10.0.26100.2033); arch amd64 or arm64; aksee an AKS EE version"})
        report = cache.clients.report(client)
        host = report.host if report else Host()
        plan = plan_for(cache.catalog.approved(group), report.installed_by(cache.catalog) if report else set(),
                        mode=mode, build=build or host.os_build, arch=arch, aksee_version=aksee or host.aksee_version,
                        reboot_pending=report.reboot_pending if report else False)
        return json_response(start_response, "200 OK", {"client": client, "group": group, "mode": mode,
                                                        **plan.to_dict()})

    def report(self, environ: WSGIEnvironment, start_response: StartResponse, cache: UpdateCache) -> Iterable[bytes]:
        """A client says what it installed: with its own token (`bundler updates enroll`), for itself
        and its group only; the body bounded (a valid Content-Length, at most MAX_REPORT bytes) and
        its length checked before the token."""
        length = body_length(environ, MAX_REPORT)
        if isinstance(length, str):
            return json_response(start_response, length, {"error": f"a report needs a valid Content-Length of at most "
                                                           f"{MAX_REPORT} bytes"})
        known = self.update_client(environ, cache)
        if not isinstance(known, tuple):
            return _unauthorized(start_response)
        client, group = known
        try:
            doc = json.loads(environ["wsgi.input"].read(length))
            if not isinstance(doc, dict):
                raise ValueError("a report is a JSON object")
            installed = doc.get("installed", [])
            if not isinstance(installed, list) or not all(isinstance(i, str) for i in installed):
                raise ValueError("installed must be a list of strings")
            if doc.get("client", client) != client or doc.get("group", group) != group:
                return json_response(start_response, "403 Forbidden", {"error": f"this token reports for {client} "
                                                                         f"(group {group}) only"})
            cache.clients.record_report(cache.catalog, client, group, installed, *step_results(doc))
        except (ValueError, KeyError, TypeError, RecursionError, BundlerError) as exc:
            return json_response(start_response, "400 Bad Request", {"error": str(exc)[:300]})
        return json_response(start_response, "200 OK", {"recorded": True, "client": client, "group": group})


RESULTS = ("installed", "failed", "reboot-pending")
MAX_RESULTS = 1000


def step_results(doc: JsonObject) -> tuple[dict[str, StepResult], Host]:
    """A Windows client's report beyond `installed`: `results` ([{sha256, status, exit_code}]) and
    `host` ({os_build, aksee_version, reboot_pending}); ValueError naming what is wrong."""
    results: dict[str, StepResult] = {}
    raw = doc.get("results", [])
    if not isinstance(raw, list) or len(raw) > MAX_RESULTS:
        raise ValueError(f"results must be a list of at most {MAX_RESULTS}")
    for item in raw:
        if not isinstance(item, dict) or not re.fullmatch(r"[a-f0-9]{64}", str(item.get("sha256", ""))) \
                or item.get("status") not in RESULTS:
            raise ValueError(f"each result is {{sha256, status ({', '.join(RESULTS)}), exit_code}}")
        code = item.get("exit_code")
        if code is not None and (not isinstance(code, int) or isinstance(code, bool) or abs(code) > 1 << 32):
            raise ValueError("exit_code must be a number")
        results[str(item["sha256"])] = StepResult(str(item["status"]), code, names.format_time())
    raw_host = doc.get("host", {})
    if not isinstance(raw_host, dict):
        raise ValueError("host must be an object")
    said: dict[str, str] = {}
    for key, rule in (("os_build", BUILD_RE), ("aksee_version", AKSEE_VERSION_RE)):
        value = raw_host.get(key)
        if value is not None:
            if not isinstance(value, str) or not rule.match(value):
                raise ValueError(f"host.{key} {str(value)[:40]!r} is not valid")
            said[key] = value
    pending = raw_host.get("reboot_pending")
    if pending is not None and not isinstance(pending, bool):
        raise ValueError("host.reboot_pending must be true or false")
    return results, Host(said.get("os_build"), said.get("aksee_version"), pending)


_SAFE_PART = re.compile(r"^[A-Za-z0-9._+~-]{1,255}$")  # a published index's path, part by part


def _payload(start_response: StartResponse, sha256: str) -> list[bytes]:
    return accel(start_response, PAYLOADS + sha256, [
        ("X-Checksum-Sha256", sha256), ("ETag", f'"{sha256}"'),
        ("Digest", "sha-256=" + base64.b64encode(bytes.fromhex(sha256)).decode())])


def _small_file(start_response: StartResponse, path: Path) -> list[bytes]:
    try:
        data = path.read_bytes()
    except OSError:
        return text_response(start_response, "404 Not Found", "not found\n")
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", str(len(data)))])
    return [data]


def _unauthorized(start_response: StartResponse) -> list[bytes]:
    body = b'{"error": "an enrolled client\'s token is required (bundler updates enroll)"}\n'
    start_response("401 Unauthorized", [("WWW-Authenticate", 'Bearer realm="bundler site updates"'),
                                         ("WWW-Authenticate", 'Basic realm="bundler site updates"'),
                                         ("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
