"""The site's own certificate authority and the HTTPS server certificate it signs (cryptography).

Clients (git, Flux, containerd) trust the site by its CA file; nothing leaves the site to get a
certificate. Keys are ECDSA P-256, written mode 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

if TYPE_CHECKING:
    from cryptography import x509

PKI_DIR = "pki"
CA_CERT, CA_KEY = "ca.pem", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
TOKEN_CERT, TOKEN_KEY = "token.pem", "token.key"  # signs the registry's tokens (the registry's rootcertbundle)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bundler site"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_pki(directory: Path, site_name: str, hostnames: list[str], ips: list[str]) -> Path:
    """Write pki/ca.pem, ca.key, server.pem, server.key; return the CA file clients trust."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    pki = directory / PKI_DIR
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(f"bundler site CA ({site_name})")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now)
          .not_valid_after(now + dt.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    server_key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys(["localhost", *hostnames])]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(["127.0.0.1", "::1", *ips])]
    server = (x509.CertificateBuilder().subject_name(_name(hostnames[0] if hostnames else "localhost"))
              .issuer_name(ca_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now).not_valid_after(now + dt.timedelta(days=825))
              .add_extension(x509.SubjectAlternativeName(names), critical=False)
              .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
              .sign(ca_key, hashes.SHA256()))
    _write_key(pki / CA_KEY, ca_key)
    _write_key(pki / SERVER_KEY, server_key)
    (pki / CA_CERT).write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (pki / SERVER_CERT).write_bytes(server.public_bytes(serialization.Encoding.PEM))
    return pki / CA_CERT


def ensure_token_signer(directory: Path) -> tuple[Path, Path]:
    """pki/token.key and a self-signed pki/token.pem: the registry trusts tokens signed by this key
    (made at `site init`, or by `site up` on a site from before tokens). Returns (cert, key)."""
    from cryptography import x509

    pki = directory / PKI_DIR
    cert_path, key_path = pki / TOKEN_CERT, pki / TOKEN_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("bundler site registry token signer")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def load_token_key(directory: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((directory / PKI_DIR / TOKEN_KEY).read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("pki/token.key is not an ECDSA key")
    return key
