"""The site's front door: nginx terminates TLS for every port of the site and faces the store
network: the HTTPS service's (the Python application, pipeline/server.py, on a unix socket behind it)
and the embedded registry's (Distribution on a unix socket of its own, which no client reaches).

What the front holds, so that no client can stop the token server, Git, the update cache or the page:
    deadlines      TLS handshake and request headers (client_header_timeout), body, send, idle
    sizes          request line and headers; a body per route, bounded BEFORE anything is read:
                   a missing (chunked), negative or oversized Content-Length gets 411/400/413
    per client     connections and request rates per client address (429 beyond them)
    Git            git's default request buffer (10 MB), bodies buffered here before the application
                   runs `git http-backend` for them (at most kinds.repos.server.GIT_PROCESSES at once)
    payloads       the application authorizes an update download, then answers `X-Accel-Redirect`:
                   nginx sends the file itself (sendfile, Range, HEAD), the application is free at once
    registry      the same deadlines and per-client limits; blob bodies stream both ways (no
                   buffering to disk), a manifest's body is bounded (MANIFEST_BODY)
Event-driven connection handling means a silent or slow socket costs a few kilobytes, not a thread.

`site up` writes the configuration under DIR/run/front/ and runs `nginx -c ... -g 'daemon off;'`
as a child service, like the registry; `site install` runs the same thing under systemd.
"""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import resource
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bundler.errors import BundlerError
from bundler.fsutil import atomic_write, make_dirs, own_like_parent
from bundler.site.config import LOG_DIR, REGISTRY_STORAGE, RUN_DIR, SiteConfig
from bundler.site.pki import PKI_DIR, SERVER_CERT, SERVER_KEY

FRONT_DIR = f"{RUN_DIR}/front"  # nginx's prefix: its configuration, pid and temporary files
APP_SOCKET = "app.sock"
REGISTRY_SOCKET = "registry.sock"

HEADER_TIMEOUT = 10  # seconds for the TLS handshake and the request line and headers
BODY_TIMEOUT = 10  # seconds of silence while a body arrives
SEND_TIMEOUT = 60  # seconds a client may stop reading a response
IDLE_TIMEOUT = 30  # a kept-alive connection with no request
CONNECTIONS_PER_CLIENT = 64  # open requests from one client address
TOKENS_PER_SECOND = 50  # /token requests per client address (burst TOKEN_BURST)
TOKEN_BURST = 200
TOKEN_BODY = "64k"
MANIFEST_BODY = "4m"  # what Distribution 3 and containerd take as a manifest's largest size
LISTEN_BACKLOG = 4096  # handshakes the kernel completes before nginx accepts them (Linux's somaxconn)
MAX_CONNECTIONS = 32768  # per worker: 20,000 silent sockets from one address leave room for every node
OPEN_FILES = 65536  # what a worker asks for (the unit's LimitNOFILE); at most the hard limit it inherits
CHECKSUM_HEADERS = ("X-Checksum-Sha256", "Digest", "ETag")  # what a file sent after X-Accel keeps of the app's answer


@dataclass(frozen=True)
class FrontRule:
    """One nginx location a content kind's service asks of the front (Kind.front).

    `path`: a prefix (`/git/`), or with `exact` one path (`/updates/api/report`). `body`: the largest
    request body it lets through ("1m"; "0": no limit), refused from its Content-Length; `posts`: a
    body must carry a Content-Length (chunked: 411). `files`: an internal location (no client reaches
    it) the front sends files from, out of this directory (a symlink to one is followed per request),
    when the application answers `X-Accel-Redirect: <path><name>`, with its checksum headers."""

    path: str
    exact: bool = False
    body: str | None = None
    posts: bool = False
    files: Path | None = None


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/sbin/nginx") if os.path.exists(p)), None)
    if found is None:
        raise BundlerError("the site's HTTPS front needs nginx, and none is installed",
                           hint="apt-get install nginx (the Debian package's own service need not run)")
    return found


def _socket(site: SiteConfig, name: str) -> Path:
    """DIR/run/NAME, or, when that path is too long for a unix socket (108 bytes), a private directory
    under the temporary directory named by the site."""
    path = (site.directory / RUN_DIR / name).resolve()
    if len(os.fsencode(path)) < 100:
        return path
    short = Path("/tmp") / f"bundler-site-{hashlib.sha256(os.fsencode(path.parent)).hexdigest()[:16]}"
    short.mkdir(mode=0o700, exist_ok=True)
    own_like_parent(short, like=site.directory)
    return short / name


def app_socket(site: SiteConfig) -> Path:
    """Where the application listens."""
    return _socket(site, APP_SOCKET)


def registry_socket(site: SiteConfig) -> Path:
    """Where the embedded registry listens: only the front connects to it."""
    return _socket(site, REGISTRY_SOCKET)


def _quote(value: object) -> str:
    """A path in nginx's configuration syntax: double-quoted (spaces, `%`, `;` and braces are fine);
    nginx has no escape for `$` (a variable) or a quote, so a site path holding one is refused."""
    text = str(value)
    if any(c in text for c in '"$\\\n\r'):
        raise BundlerError(f"the site's path {text!r} holds a character nginx cannot take (\" $ \\ or a newline)",
                           hint="move the site to a directory without them")
    return f'"{text}"'


def _listen(address: str) -> str:
    """nginx's `listen` for HOST:PORT, with a deep accept queue: under a flood of silent connections
    (SYN cookies on) a handshake completed while nginx's default queue of 511 is full is dropped by the
    kernel without a word, and its client holds a connection the front never saw (the kernel caps
    the queue at net.core.somaxconn)."""
    host, _, port = address.rpartition(":")
    where = f"{host}:{port}" if host.startswith("[") or host else port
    return f"{where} backlog={LISTEN_BACKLOG}"


def low_port(site: SiteConfig) -> bool:
    """A port below 1024: only root binds it (then nginx's master runs as root, its workers do not)."""
    ports = [int(address.rpartition(":")[2]) for address in (site.http.listen, site.registry.listen) if address]
    return min(ports) < 1024


def _worker_user(site: SiteConfig) -> str:
    """nginx's workers run as the site's owner: its own user (`site init` as root, `site install`), or
    root for a site root keeps (--as-root). Without a low port nginx runs as that user altogether
    (site/service.py), and this line is not needed."""
    owner = site.directory.stat()
    if os.geteuid() != 0 or (owner.st_uid != 0 and not low_port(site)):
        return ""  # nginx runs as the site's user altogether
    return f"user {pwd.getpwuid(owner.st_uid).pw_name} {grp.getgrgid(owner.st_gid).gr_name};\n"


NO_CHUNKED = "    if ($http_transfer_encoding) { return 411; }\n"  # a body needs a Content-Length
PROXY = "    proxy_pass http://app;\n"


def _location(rule: FrontRule) -> str:
    if rule.files is not None:
        from_app = "".join(f"    add_header {h} $upstream_http_{h.lower().replace('-', '_')} always;\n"
                           for h in CHECKSUM_HEADERS)
        alias = _quote(os.path.abspath(rule.files) + "/")
        return (f"    location {_quote(rule.path)} {{\n    internal;\n    alias {alias};\n    etag off;\n"
                f"{from_app}    }}\n")
    body = f"    client_max_body_size {rule.body};\n" if rule.body else ""
    return (f"    location {'= ' if rule.exact else ''}{_quote(rule.path)} {{\n{body}"
            f"{NO_CHUNKED if rule.posts else ''}{PROXY}    }}\n")


def front_config(site: SiteConfig, rules: Sequence[FrontRule] = ()) -> str:
    """nginx's configuration: the site's own routes (/healthz, /token, the page) and each content
    kind's `rules`."""
    prefix = (site.directory / FRONT_DIR).resolve()
    pki = (site.directory / PKI_DIR).resolve()
    log = (site.directory / LOG_DIR).resolve()
    q = _quote
    no_chunked, proxy = NO_CHUNKED, PROXY
    files = min(OPEN_FILES, resource.getrlimit(resource.RLIMIT_NOFILE)[1])  # only CAP_SYS_RESOURCE goes higher
    tls = (f"    ssl_certificate {q(pki / SERVER_CERT)};\n    ssl_certificate_key {q(pki / SERVER_KEY)};\n"
           "    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_session_cache shared:tls:4m;\n    ssl_session_timeout 1h;\n")
    return f"""# written by `bundler site up`; edit site.yaml, not this file
{_worker_user(site)}worker_processes auto;
worker_rlimit_nofile {files};
pid {q(prefix / "nginx.pid")};
error_log {q(log / "front.log")} warn;
events {{ worker_connections {min(MAX_CONNECTIONS, files - 64)}; }}
http {{
  access_log off;
  server_tokens off;
  types {{ }}
  default_type application/octet-stream;
  sendfile on;
  tcp_nopush on;
  output_buffers 2 512k;  # a payload over TLS: half the time of the default 2 x 32k here
  client_body_temp_path {q(prefix / "body")};
  proxy_temp_path {q(prefix / "proxy")};
  fastcgi_temp_path {q(prefix / "fastcgi")};
  uwsgi_temp_path {q(prefix / "uwsgi")};
  scgi_temp_path {q(prefix / "scgi")};

  client_header_timeout {HEADER_TIMEOUT}s;  # also the TLS handshake's deadline
  client_body_timeout {BODY_TIMEOUT}s;
  send_timeout {SEND_TIMEOUT}s;
  keepalive_timeout {IDLE_TIMEOUT}s;
  keepalive_requests 1000;
  reset_timedout_connection on;
  client_header_buffer_size 1k;
  large_client_header_buffers 4 8k;  # request line and each header at most 8 KiB
  client_max_body_size 16k;
  client_body_buffer_size 64k;

  limit_conn_zone $binary_remote_addr zone=per_client:4m;
  limit_req_zone $binary_remote_addr zone=tokens:4m rate={TOKENS_PER_SECOND}r/s;
  limit_conn per_client {CONNECTIONS_PER_CLIENT};
  limit_conn_status 429;
  limit_req_status 429;

  upstream app {{
    server {q("unix:" + str(app_socket(site)))};
    keepalive 16;
  }}
{_registry_upstream(site)}  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  proxy_set_header X-Real-IP $remote_addr;
  proxy_set_header X-Forwarded-Proto https;
  proxy_read_timeout 300s;
  proxy_max_temp_file_size 1024m;

  server {{
    listen {_listen(site.http.listen)} ssl;
{tls}
    location = /healthz {{
{proxy}    }}
    location = /token {{
    client_max_body_size {TOKEN_BODY};
    limit_req zone=tokens burst={TOKEN_BURST} nodelay;
{no_chunked}{proxy}    }}
{"".join(map(_location, rules))}    location / {{
{proxy}    }}
  }}
{_registry_server(site, tls)}}}
"""


def _registry_upstream(site: SiteConfig) -> str:
    if not site.embedded_registry:
        return ""
    return f"""  upstream registry {{
    server {_quote("unix:" + str(registry_socket(site)))};
    keepalive 32;
  }}
"""


BLOB = "^/v2/.+/blobs/sha256:(?<h2>[a-f0-9]{2})(?<h62>[a-f0-9]{62})$"  # a blob by digest, as clients fetch it


def _registry_server(site: SiteConfig, tls: str) -> str:
    """The embedded registry's port: the same TLS, deadlines and per-client limits as the HTTPS
    service's; blobs stream through in both directions (a layer of GiBs is never spooled to disk), and
    only a manifest's body is bounded here (Distribution refuses a request without a token itself).

    On the site's own disk, a blob's GET is answered by nginx from the registry's storage once the
    registry said yes to the same request as a HEAD (the token, the blob linked in that repository):
    one hop less for every layer byte, so a pull costs what the registry's own TLS listener cost. Any
    answer but yes or no (a blob not there: 404) is the registry's own."""
    if site.registry.listen is None:
        return ""
    registry = "    proxy_pass http://registry;\n"
    blobs = "" if site.registry.storage else f"""    location ~ "{BLOB}" {{
    error_page 418 = @blob_file;
    recursive_error_pages on;  # @blob_file hands what the registry did not answer yes or no back to it
    if ($request_method = GET) {{ return 418; }}
{registry}    }}
    location @blob_file {{
    auth_request /_registry_auth;
    error_page 500 = @registry;
    root {_quote((site.directory / REGISTRY_STORAGE / "docker/registry/v2/blobs/sha256").resolve())};
    rewrite ^ /$h2/$h2$h62/data break;
    disable_symlinks on;  # a link planted in the storage is not followed
    types {{ }}
    default_type application/octet-stream;
    etag off;
    add_header Docker-Content-Digest sha256:$h2$h62 always;
    add_header ETag '"sha256:$h2$h62"' always;
    add_header Docker-Distribution-Api-Version registry/2.0 always;
    }}
    location = /_registry_auth {{
    internal;
    proxy_method HEAD;
    proxy_pass_request_body off;
    proxy_set_header Content-Length "";
    proxy_set_header Connection "";
    proxy_set_header Host $http_host;
    proxy_set_header X-Forwarded-Proto https;
    proxy_pass http://registry$request_uri;
    }}
    location @registry {{
    proxy_pass http://registry$request_uri;  # the URI as the client sent it, not @blob_file's rewrite
    }}
"""
    return f"""
  server {{
    listen {_listen(site.registry.listen)} ssl;
{tls}    client_max_body_size 0;
    proxy_request_buffering off;
    proxy_max_temp_file_size 0;  # a blob streams through memory (the buffers below), never spooled to disk
    proxy_buffers 8 64k;
    proxy_busy_buffers_size 128k;
{blobs}    location /v2/ {{
{registry}    }}
    location ~ ^/v2/.+/manifests/[^/]+$ {{
    client_max_body_size {MANIFEST_BODY};
{registry}    }}
    location / {{
    return 404;
    }}
  }}
"""


def front_config_file(site: SiteConfig) -> Path:
    return site.directory / FRONT_DIR / "nginx.conf"


def write_config(site: SiteConfig, text: str) -> Path:
    make_dirs(site.directory / FRONT_DIR)
    make_dirs(site.directory / LOG_DIR)
    path = front_config_file(site)
    atomic_write(path, text.encode())
    return path


def front_command(site: SiteConfig) -> list[str]:
    """The nginx command line (its own prefix, configuration and error log; not a daemon)."""
    prefix = (site.directory / FRONT_DIR).resolve()
    return [nginx_binary(), "-p", f"{prefix}/", "-c", str(front_config_file(site).resolve()),
            "-e", str((site.directory / LOG_DIR / "front.log").resolve()), "-g", "daemon off;"]
