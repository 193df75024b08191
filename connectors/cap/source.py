"""Where CAP documents come from: a file, a drop folder, or an Atom/RSS feed URL; and the
cursor that makes a folder or a feed deliver each document and each alert once.

The cursor is plain JSON (``CapCursor.load``/``save``, written atomically), so the connector
daemon can keep one per connector and restart where it stopped: the folder's files seen (by
name and content hash: a file rewritten with new content is read again), the alerts seen
(event id -> ``sent``), and per feed URL its ``ETag``/``Last-Modified`` for conditional GETs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from connectors.cap.xmldoc import ATOM, MAX_BYTES, DocumentError, parse
from hub.errors import InvalidInput

log = logging.getLogger(__name__)

MAX_ALERTS_SEEN = 100_000  # alerts (and feed links) remembered
MAX_LINKS = 500  # alerts fetched per feed poll
CAP_TYPES = ("application/cap+xml", "application/common-alerting-protocol+xml")


class CapSourceError(InvalidInput, RuntimeError):
    """The source cannot be read at all (missing file, folder, unreachable feed)."""


@dataclass(frozen=True, slots=True)
class Document:
    name: str  # file path or URL, for reports
    data: bytes
    key: str = ""  # cursor key marking it done ("" = not tracked)


@dataclass
class CapCursor:
    files_seen: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    alerts_seen: dict[str, str] = field(default_factory=dict)  # event_id -> sent
    feeds: dict[str, dict[str, str]] = field(default_factory=dict)  # url -> etag, last_modified
    links_seen: dict[str, str] = field(default_factory=dict)  # alert URL of a feed -> ""

    @classmethod
    def load(cls, path: Path) -> CapCursor:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise CapSourceError(f"{path}: unreadable cursor ({exc})") from exc
        keys = ("files_seen", "alerts_seen", "feeds", "links_seen")
        return cls(**{k: data.get(k, {}) for k in keys})

    def save(self, path: Path) -> None:
        # Bounded, oldest forgotten first: fusion's event_id check is the second wall.
        self.alerts_seen = dict(list(self.alerts_seen.items())[-MAX_ALERTS_SEEN:])
        self.links_seen = dict(list(self.links_seen.items())[-MAX_ALERTS_SEEN:])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(asdict(self), f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)


def is_url(source: str | Path) -> bool:
    return isinstance(source, str) and urlsplit(source).scheme in ("http", "https")


def read_file(path: Path) -> Document:
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise CapSourceError(f"{path}: {size:,} bytes, more than a CAP document may be")
        return Document(str(path), path.read_bytes())
    except OSError as exc:
        raise CapSourceError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def folder_documents(folder: Path, cursor: CapCursor) -> Iterator[Document]:
    """The folder's files not yet seen with this content, in name order (hidden files and
    partial uploads ending in .tmp/.part are left alone)."""
    try:
        names = sorted(p for p in folder.iterdir() if p.is_file())
    except OSError as exc:
        raise CapSourceError(f"{folder}: cannot list ({exc.strerror or exc})") from exc
    for path in names:
        if path.name.startswith(".") or path.suffix in (".tmp", ".part"):
            continue
        doc = read_file(path)
        digest = hashlib.sha256(doc.data).hexdigest()
        if cursor.files_seen.get(path.name) != digest:
            yield Document(doc.name, doc.data, f"file:{path.name}\x1f{digest}")


def mark_done(cursor: CapCursor, doc: Document) -> None:
    """Record a document as read (once its events are safe in the outbox)."""
    kind, _, rest = doc.key.partition(":")
    if kind == "file":
        name, _, digest = rest.partition("\x1f")
        cursor.files_seen[name] = digest
    elif kind == "link":
        cursor.links_seen[rest] = ""


class FeedPoller:
    """One poll of an Atom/RSS feed: a conditional GET, then the alerts its entries link to
    (embedded alerts come with the feed document itself)."""

    def __init__(self, client: httpx.Client, cursor: CapCursor) -> None:
        self.client, self.cursor = client, cursor

    def poll(self, url: str) -> Iterator[Document]:
        state = self.cursor.feeds.setdefault(url, {})
        headers = {"Accept": "application/atom+xml, application/rss+xml, application/xml"}
        if state.get("etag"):
            headers["If-None-Match"] = state["etag"]
        if state.get("last_modified"):
            headers["If-Modified-Since"] = state["last_modified"]
        response = self._get(url, headers)
        if response.status_code == 304:
            log.debug("cap feed unchanged", extra={"url": url})
            return
        for header, key in (("ETag", "etag"), ("Last-Modified", "last_modified")):
            if response.headers.get(header):
                state[key] = response.headers[header]
        feed = Document(url, response.content)
        yield feed
        try:
            links = entry_links(feed.data, url)
        except DocumentError:
            return  # the feed document itself is reported as unusable by the caller
        fresh = [u for u in links if u not in self.cursor.links_seen][:MAX_LINKS]
        for link in fresh:  # an alert a feed still lists is not fetched again
            data = self._get(link, {"Accept": ", ".join(CAP_TYPES)}).content
            yield Document(link, data, f"link:{link}")

    def _get(self, url: str, headers: dict[str, str]) -> httpx.Response:
        try:
            response = self.client.get(url, headers=headers)
        except httpx.HTTPError as exc:
            raise CapSourceError(f"{url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code not in (200, 304):
            raise CapSourceError(f"{url}: HTTP {response.status_code}")
        if len(response.content) > MAX_BYTES:
            raise CapSourceError(f"{url}: more than {MAX_BYTES:,} bytes")
        return response


def entry_links(data: bytes, base: str) -> list[str]:
    """The http(s) links of a feed's entries to CAP alerts (Atom ``link`` with a CAP type, or
    an entry without embedded alert: its first link; RSS ``item/link``), resolved against
    ``base``; other schemes (file:, ftp:) are never followed."""
    root = parse(data)
    links: list[str] = []
    if root.tag == f"{{{ATOM}}}feed":
        for entry in root.iter(f"{{{ATOM}}}entry"):
            if any(el.tag.endswith("}alert") for el in entry.iter() if isinstance(el.tag, str)):
                continue
            hrefs = entry.findall(f"{{{ATOM}}}link")
            typed = [h for h in hrefs if h.get("type") in CAP_TYPES]
            chosen = (typed or hrefs)[:1]
            links += [urljoin(base, h.get("href", "")) for h in chosen if h.get("href")]
    else:
        links += [urljoin(base, (el.text or "").strip()) for el in root.iter("link") if el.text]
    return [u for u in dict.fromkeys(links) if urlsplit(u).scheme in ("http", "https")]
