"""XML signatures of CAP alerts (XMLDSIG, enveloped), checked with ``signxml``.

An alert may carry several ``ds:Signature`` children (NAADS: the originator's and the
distributor's). Each is checked on the alert as it was signed (the other signatures set aside:
an enveloped signature covers the alert's content, not its sibling signatures), with the
signing certificate's chain built up to the mapping's trust anchors at the alert's ``sent``
time, not today's: an alert signed while its certificate was valid stays verifiable. The alert
is trusted when one signature verifies; when none does, the first failure is the reason.
"""

from __future__ import annotations

import base64
import copy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import DigestAlgorithm, SignatureConfiguration, SignatureMethod, XMLVerifier
from signxml.exceptions import SignXMLException

from connectors.cap.xmldoc import XMLDSIG

_WEAK = ("sha1",)  # SHA-1 digests and signature methods (legacy feeds: allow_sha1)


class SignatureProblem(ValueError):
    """The alert's signature is missing, invalid, or not from a trusted signer."""


@dataclass(frozen=True)
class Trust:
    anchors: Path  # PEM bundle of CA (or pinned signer) certificates
    allow_sha1: bool = False

    def config(self, at: datetime) -> SignatureConfiguration:
        methods = frozenset(m for m in SignatureMethod if self.allow_sha1 or not _weak(m.value))
        digests = frozenset(d for d in DigestAlgorithm if self.allow_sha1 or not _weak(d.value))
        return SignatureConfiguration(
            location="./",  # a child of <alert>: a signature over something else is no proof
            verification_time=at,
            signature_methods=methods,
            digest_algorithms=digests,
        )


def _weak(uri: str) -> bool:
    return any(w in uri.rsplit("#", 1)[-1].lower() for w in _WEAK)


def signatures(alert: etree._Element) -> list[etree._Element]:
    return alert.findall(f"{{{XMLDSIG}}}Signature")


def verify(alert: etree._Element, trust: Trust, sent: datetime) -> str:
    """The signer (the certificate's common name, else its subject) of the first signature that
    verifies; raises ``SignatureProblem`` naming why none did."""
    problems: list[str] = []
    for index in range(len(signatures(alert))):
        single = copy.deepcopy(alert)
        for n, sig in enumerate(signatures(single)):
            if n != index:
                single.remove(sig)
        try:
            result = XMLVerifier().verify(
                single,
                ca_pem_file=str(trust.anchors),
                expect_config=trust.config(sent),
                # signxml's own XSD check refuses real NAADS signatures (an Id with a space);
                # the structure it needs is checked as it verifies.
                validate_schema=False,
            )
        except (SignXMLException, ValueError) as exc:
            problems.append(f"signature {index + 1}: {_describe(exc)}")
            continue
        first = result[0] if isinstance(result, list) else result
        return signer_name(_signing_cert(first.signature_xml, first.signature_key))
    if not problems:
        raise SignatureProblem("alert/Signature missing (trust anchors require one)")
    raise SignatureProblem("; ".join(problems))


def _describe(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    if ("X509" in text and "not found" in text.lower()) or "KeyValue" in text:
        return f"{text} (no X.509 certificate to check against the trust anchors)"
    return f"{type(exc).__name__}: {text[:300]}"


def _signing_cert(signature: etree._Element, key_pem: bytes) -> x509.Certificate | None:
    """The certificate of the signature whose public key made it (signxml returns the key)."""
    for node in signature.iter(f"{{{XMLDSIG}}}X509Certificate"):
        cert = x509.load_der_x509_certificate(base64.b64decode("".join((node.text or "").split())))
        pem = cert.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        if pem == key_pem:
            return cert
    return None


def signer_name(cert: x509.Certificate | None) -> str:
    if cert is None:
        return "unknown"
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else cert.subject.rfc4514_string()
