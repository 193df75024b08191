"""CAP alerts signed with an XML signature (enveloped, signxml), when the operator configured a
key and its certificate (``HUB_CAP_SIGNING_KEY``, ``HUB_CAP_SIGNING_CERT``: PEM files). The
certificate travels in the signature's ``KeyInfo``, so a receiver verifies it against the
certificate it trusts for the hub."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from lxml import etree
from signxml import SignatureMethod, XMLSigner

from hub.errors import ConfigError


class SigningError(ConfigError):
    """The configured CAP signing key or certificate cannot be used: the operator's to fix."""


@dataclass(frozen=True)
class Signer:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    cert_pem: str

    def sign(self, alert: etree._Element) -> etree._Element:
        method = (
            SignatureMethod.RSA_SHA256
            if isinstance(self.key, rsa.RSAPrivateKey)
            else SignatureMethod.ECDSA_SHA256
        )
        signed: etree._Element = XMLSigner(signature_algorithm=method).sign(
            alert, key=self.key, cert=self.cert_pem
        )
        return signed


@lru_cache(maxsize=4)
def load_signer(key_path: Path, cert_path: Path) -> Signer:
    """The key and certificate at those paths (read once), checked to belong together."""
    try:
        key = load_pem_private_key(key_path.read_bytes(), password=None)
        cert_pem = cert_path.read_text(encoding="ascii")
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
    except (OSError, ValueError, TypeError) as exc:
        raise SigningError(f"CAP signing key {key_path} / cert {cert_path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningError(f"{key_path}: an RSA or EC private key is needed for CAP signatures")
    if cert.public_key() != key.public_key():
        raise SigningError(f"{cert_path} is not the certificate of {key_path}")
    return Signer(key, cert_pem)
