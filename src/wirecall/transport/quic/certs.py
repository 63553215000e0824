"""Self-signed TLS certificates for ``quic://`` (QUIC always runs TLS 1.3): tests and the demo
generate a throwaway certificate authority-less pair with :func:`write_self_signed`."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence

__all__ = ["write_self_signed"]


def write_self_signed(
    directory: str | os.PathLike[str],
    hostnames: Sequence[str] = ("localhost", "127.0.0.1", "::1"),
    *,
    days: int = 30,
    name: str = "wirecall",
) -> tuple[str, str]:
    """Write ``<name>.crt`` and ``<name>.key`` (an ECDSA P-256 key, a certificate valid for
    ``hostnames`` and ``days`` days) under ``directory``; return their paths.

    The certificate signs itself: a client trusts it by passing its path as ``cafile=``.
    The key file is created readable by its owner only.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if not hostnames:
        raise ValueError("write_self_signed needs at least one hostname")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    alt: list[x509.GeneralName] = []
    for h in hostnames:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            alt.append(x509.DNSName(h))
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    os.makedirs(directory, exist_ok=True)
    crt_path = os.path.join(directory, f"{name}.crt")
    key_path = os.path.join(directory, f"{name}.key")
    with open(crt_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))
    return crt_path, key_path
