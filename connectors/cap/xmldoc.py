"""Reading CAP documents safely: parse, unwrap containers, validate each alert on its own.

The parser loads no DTD, resolves no entity, follows no XInclude and opens no network
connection (lxml: ``resolve_entities=False, no_network=True, load_dtd=False``); a document
that declares a DOCTYPE at all is refused before anything of it is used, since no CAP, EDXL-DE
or feed document needs one and every XXE/SSRF trick starts there.

Containers: a single ``<alert>`` (CAP 1.1 or 1.2), an EDXL-DE 1.0 envelope (alerts in
``contentObject/xmlContent/embeddedXMLContent``), an ``<alerts>`` wrapper (SMHI's form, not a CAP
element), or an Atom/RSS feed with alerts embedded in its entries. Each alert is validated
against its own version's XSD (``schemas/cap/``), so one bad alert in an envelope
rejects only itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

import schemas
from hub.errors import InvalidInput

CAP11 = "urn:oasis:names:tc:emergency:cap:1.1"
CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"
EDXL_DE = "urn:oasis:names:tc:emergency:EDXL:DE:1.0"
XMLDSIG = "http://www.w3.org/2000/09/xmldsig#"
ATOM = "http://www.w3.org/2005/Atom"
CAP_NAMESPACES = {CAP11: "1.1", CAP12: "1.2"}
SCHEMA_DIR = Path(schemas.__file__).parent / "cap"  # shared with the API's CAP out
_SCHEMA_FILES = {CAP11: "CAP-v1.1.xsd", CAP12: "CAP-v1.2.xsd", EDXL_DE: "EDXL-DE-1.0.xsd"}
MAX_BYTES = 20 << 20  # one CAP document; real ones are kilobytes, a feed a few hundred


class DocumentError(InvalidInput, ValueError):
    """The whole document is unusable (not XML, a DOCTYPE, not a CAP container)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


def safe_parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers keep state and are not shared across threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_pis=True,  # xml-stylesheet instructions are never acted on, nor kept
    )


def parse(data: bytes) -> etree._Element:
    """The root element of ``data``, refusing DOCTYPEs; raises ``DocumentError``."""
    if len(data) > MAX_BYTES:
        raise DocumentError("document too large", f"{len(data):,} bytes > {MAX_BYTES:,}")
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise DocumentError("not well-formed XML", str(exc)) from None
    if root is None:
        raise DocumentError("not well-formed XML", "empty document")
    info: Any = root.getroottree().docinfo  # lxml-stubs lack DocInfo.doctype
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise DocumentError(
            "DOCTYPE refused", "a DTD or entity declaration (external entities are never read)"
        )
    return root


@dataclass(frozen=True, slots=True)
class Found:
    """One alert found in a document: the element (detached copy) and where it was."""

    alert: etree._Element
    where: str  # "alert", "EDXL-DE contentObject 3", "alerts[2]", "feed entry 1"
    version: str  # "1.1" / "1.2"


def alerts_in(root: etree._Element) -> list[Found]:
    """Every CAP alert of a document, unwrapped; raises ``DocumentError`` when it holds none
    or is of an unknown kind (the reason names the root element and its namespace)."""
    ns, local = _split(root.tag)
    if local == "alert" and ns in CAP_NAMESPACES:
        return [Found(root, "alert", CAP_NAMESPACES[ns])]
    if ns == EDXL_DE and local == "EDXLDistribution":
        problems = schema_problems(root, EDXL_DE)
        if problems:
            raise DocumentError("EDXL-DE envelope fails its XSD", problems)
        return _embedded(root, "EDXL-DE alert")
    if local == "alerts" and ns in CAP_NAMESPACES:
        return _embedded(root, "alerts/alert")
    if (ns == ATOM and local == "feed") or local == "rss":
        return _embedded(root, "feed alert")
    known = "CAP 1.1/1.2 <alert>, EDXL-DE <EDXLDistribution>, <alerts>, Atom <feed> or RSS"
    raise DocumentError(
        "not a CAP document", f"root <{local}> in namespace {ns!r}; expected {known}"
    )


def _embedded(root: etree._Element, where: str) -> list[Found]:
    out = []
    for n, el in enumerate(root.iter(f"{{{CAP11}}}alert", f"{{{CAP12}}}alert"), start=1):
        # A copy of its own: namespace declarations travel with it, and signatures are checked
        # on the alert as it was signed, not inside the envelope.
        alert = etree.fromstring(etree.tostring(el), safe_parser())
        out.append(Found(alert, f"{where} {n}", CAP_NAMESPACES[_split(el.tag)[0]]))
    return out


def schema_problems(element: etree._Element, namespace: str) -> str:
    """'' when ``element`` is valid against the XSD of ``namespace``, else the first errors.

    Enveloped XML signatures (``ds:Signature`` children of an alert) are set aside first: CAP
    1.1 describes them (3.3.2.1) but its XSD has no place for them; they are checked on their
    own by ``connectors.cap.signature``."""
    schema = _schema(namespace)
    target = element
    if element.find(f"{{{XMLDSIG}}}Signature") is not None:
        target = copy.deepcopy(element)
        for sig in target.findall(f"{{{XMLDSIG}}}Signature"):
            target.remove(sig)
    if schema.validate(target):
        return ""
    log: Any = schema.error_log  # iterable; lxml-stubs say otherwise
    errors = [f"line {e.line}: {e.message}" for e in log][:3]
    return "; ".join(errors)


@cache
def _schema(namespace: str) -> etree.XMLSchema:
    path = SCHEMA_DIR / _SCHEMA_FILES[namespace]
    return etree.XMLSchema(etree.parse(str(path), safe_parser()))


def _split(tag: object) -> tuple[str, str]:
    text = str(tag)
    if text.startswith("{"):
        ns, _, local = text[1:].partition("}")
        return ns, local
    return "", text
