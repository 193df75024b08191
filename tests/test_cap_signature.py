"""XML signatures of CAP alerts: alerts signed here by a test CA verify at their ``sent`` time
and name the signer; tampered copies (digest, signature value, certificate) and signers
outside the trust anchors are rejected; the real signed samples are checked too."""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml import XMLSigner, methods

from connectors.cap.convert import AlertReject
from connectors.cap.mapping import CapMapping
from connectors.cap.signature import Trust, verify
from connectors.cap.xmldoc import XMLDSIG, parse
from tests.cap_helpers import CAP_DATA, alert_xml, convert, mapping

UTC = dt.UTC
DS = f"{{{XMLDSIG}}}"


@dataclass
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2015, 1, 1, tzinfo=UTC))
        .not_valid_after(dt.datetime(2040, 1, 1, tzinfo=UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def make_signer(ca: Issued, cn: str, start: dt.datetime, end: dt.datetime) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(aki, critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def sign(xml: str, signer: Issued) -> bytes:
    root = parse(xml.encode())
    signed = XMLSigner(
        method=methods.enveloped, signature_algorithm="ecdsa-sha256", digest_algorithm="sha256"
    ).sign(root, key=signer.key_pem, cert=[signer.pem.decode()])
    return bytes(etree.tostring(signed))


@dataclass
class Pki:
    anchors: Path
    signer: Issued
    other: Issued  # another signer of the same CA
    rogue: Issued  # the same name, from a CA outside the anchors


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    ca, rogue = make_ca("Test CAP Root"), make_ca("Rogue Root")
    valid = (dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2021, 1, 1, tzinfo=UTC))
    anchors = tmp_path_factory.mktemp("pki") / "anchors.pem"
    anchors.write_bytes(ca.pem)
    return Pki(
        anchors,
        make_signer(ca, "Test CAP Signer", *valid),
        make_signer(ca, "Another Signer", *valid),
        make_signer(rogue, "Test CAP Signer", *valid),
    )


SENT_VALID = "2020-06-01T12:00:00+00:00"  # inside the signer's validity, long expired today


def _mapping(anchors: Path, **extra: object) -> CapMapping:
    return mapping(signatures={"trust_anchors": str(anchors), **extra})


def test_signed_alert_verifies_at_its_sent_time_and_names_the_signer(pki: Pki) -> None:
    data = sign(alert_xml("sig1", sent=SENT_VALID), pki.signer)
    event = convert(data, _mapping(pki.anchors)).event
    assert event.properties["signer"] == "Test CAP Signer"
    late = sign(alert_xml("sig2", sent="2022-06-01T12:00:00+00:00"), pki.signer)
    with pytest.raises(AlertReject, match="alert/Signature invalid") as caught:
        convert(late, _mapping(pki.anchors))
    assert "expired" in caught.value.detail


def test_tampered_copies_are_rejected(pki: Pki) -> None:
    data = sign(alert_xml("sig3", sent=SENT_VALID), pki.signer)
    cap_mapping = _mapping(pki.anchors)
    digest = data.replace(b"Structure Fire (en-US)", b"Structure Fire (EN-US)")
    value = _edit(
        data, "SignatureValue", lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:]
    )
    other_cert = base64.b64encode(pki.other.cert.public_bytes(serialization.Encoding.DER))
    cert = _edit(data, "X509Certificate", lambda _: other_cert.decode())
    rogue = sign(alert_xml("sig3", sent=SENT_VALID), pki.rogue)
    details = {}
    for name, doc in {"digest": digest, "value": value, "cert": cert, "rogue": rogue}.items():
        with pytest.raises(AlertReject, match="alert/Signature invalid") as caught:
            convert(doc, cap_mapping)
        details[name] = caught.value.detail
    assert "Digest" in details["digest"]
    assert "Signature" in details["value"] and "Digest" not in details["value"]
    assert "Signature" in details["cert"]
    assert "Certificate" in details["rogue"]


def _edit(data: bytes, element: str, change: Callable[[str], str]) -> bytes:
    root = etree.fromstring(data)
    node = root.find(f".//{DS}{element}")
    assert node is not None and node.text
    node.text = change("".join(node.text.split()))
    return bytes(etree.tostring(root))


def test_unsigned_alerts_when_signatures_are_required(pki: Pki) -> None:
    assert "signer" not in convert(alert_xml("u1"), _mapping(pki.anchors)).event.properties
    with pytest.raises(AlertReject, match="alert/Signature missing"):
        convert(alert_xml("u2"), _mapping(pki.anchors, required=True))


def _pin(sample: Path, tmp_path: Path) -> Path:
    """A trust bundle of the certificates a sample carries (pinned signers, as a community
    pins its alerting authority's certificate)."""
    root = parse(sample.read_bytes())
    certs = [
        x509.load_der_x509_certificate(base64.b64decode("".join((c.text or "").split())))
        for c in root.iter(f"{DS}X509Certificate")
    ]
    path = tmp_path / f"{sample.stem}.pem"
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


def test_real_signed_samples_at_their_sent_time(tmp_path: Path) -> None:
    canada = CAP_DATA / "valid" / "canada_signed.cap"
    pinned = _pin(canada, tmp_path)
    event = convert(
        canada.read_bytes(), mapping(signatures={"trust_anchors": str(pinned), "allow_sha1": True})
    ).event
    assert event.properties["signer"] == "meteo.gc.ca"  # Environment Canada's signature
    with pytest.raises(AlertReject, match="alert/Signature invalid"):  # SHA-1 refused by default
        convert(canada.read_bytes(), mapping(signatures={"trust_anchors": str(pinned)}))

    athoc = CAP_DATA / "valid" / "no_info_tag.cap"  # FEMA IPAWS; rejected later for no <info>
    root = parse(athoc.read_bytes())
    sent = dt.datetime.fromisoformat(root.findtext("{*}sent") or "")
    assert verify(root, Trust(_pin(athoc, tmp_path), allow_sha1=True), sent) == "IPAWSOPEN_120009"

    # NAADS 2019: Environment Canada's certificate had expired (2018-09-29) when it was sent.
    naad = CAP_DATA / "valid" / "CanadaNaad.xml"
    with pytest.raises(AlertReject, match="alert/Signature invalid") as caught:
        convert(naad.read_bytes(), mapping(signatures={"trust_anchors": str(_pin(naad, tmp_path))}))
    assert "expired" in caught.value.detail
