"""Certificates for the TLS tests, made once per session with ``cryptography``: a CA, a server
certificate for 127.0.0.1/localhost, client certificates (one with a SPIFFE URI SAN, one with
only a CN) and a client certificate from a CA the server does not trust."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str


@dataclass(frozen=True)
class Certs:
    dir: Path
    ca: str
    server: Pair
    server2: Pair  # the same names, another key: for the reload test
    client: Pair  # URI SAN spiffe://wirecall.test/client-a
    client_cn: Pair  # subject CN "client-b", no SAN
    rogue_client: Pair  # issued by a CA the server does not know


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> Pair:
    k = path.with_suffix(".key")
    c = path.with_suffix(".pem")
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pair(str(c), str(k))


def _ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def _leaf(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], cn: str,
          sans: list[x509.GeneralName], server: bool) -> tuple[ec.EllipticCurvePrivateKey,
                                                               x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[1].subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(hours=1))
         .not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage(
             [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
             critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return key, b.sign(ca[0], hashes.SHA256())


def make_certs(directory: Path) -> Certs:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("wirecall test CA")
    rogue = _ca("rogue CA")
    ca_path = directory / "ca.pem"
    ca_path.write_bytes(ca[1].public_bytes(serialization.Encoding.PEM))
    server_sans: list[x509.GeneralName] = [
        x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    return Certs(
        dir=directory,
        ca=str(ca_path),
        server=_write(directory / "server", *_leaf(ca, "localhost", server_sans, True)),
        server2=_write(directory / "server2", *_leaf(ca, "localhost-2", server_sans, True)),
        client=_write(directory / "client", *_leaf(
            ca, "client-a", [x509.UniformResourceIdentifier("spiffe://wirecall.test/client-a")],
            False)),
        client_cn=_write(directory / "client_cn", *_leaf(ca, "client-b", [], False)),
        rogue_client=_write(directory / "rogue", *_leaf(rogue, "rogue", [], False)),
    )
