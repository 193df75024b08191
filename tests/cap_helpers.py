"""Helpers of the CAP connector tests: alerts written from a template, a file-access watcher
(inotify, so it sees reads made by libxml2's C code too) and a local HTTP server that records
every request it gets."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from connectors.cap.convert import AlertConverter, Converted
from connectors.cap.mapping import CapMapping, parse_cap_mapping
from connectors.cap.xmldoc import alerts_in, parse
from tests.conftest import SHARED_DATA

CAP_DATA = SHARED_DATA / "cap"
CAP12 = "urn:oasis:names:tc:emergency:cap:1.2"

# Mission District, San Francisco (inside the DataSF neighbourhood "Mission").
MISSION_POLYGON = (
    "37.7600,-122.4210 37.7600,-122.4150 37.7640,-122.4150 37.7640,-122.4210 37.7600,-122.4210"
)


def alert_xml(
    identifier: str,
    *,
    sender: str = "test@hub.example",
    sent: str = "2026-12-01T10:00:00-08:00",
    status: str = "Actual",
    msg_type: str = "Alert",
    references: str | None = None,
    infos: list[str] | None = None,
) -> str:
    """A CAP 1.2 alert; ``infos`` are the ``<info>`` elements' XML (one default fire info)."""
    refs = f"<references>{references}</references>" if references is not None else ""
    body = "".join(infos if infos is not None else [info_xml()])
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<alert xmlns="{CAP12}">'
        f"<identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent>"
        f"<status>{status}</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}"
        f"{body}</alert>"
    )


def info_xml(
    *,
    language: str = "en-US",
    category: str = "Fire",
    event: str = "Structure Fire",
    area: str | None = None,
    urgency: str = "Immediate",
    severity: str = "Severe",
    certainty: str = "Observed",
) -> str:
    areas = area if area is not None else area_xml(polygon=MISSION_POLYGON)
    return (
        f"<info><language>{language}</language><category>{category}</category>"
        f"<event>{event}</event><urgency>{urgency}</urgency><severity>{severity}</severity>"
        f"<certainty>{certainty}</certainty><headline>{event} ({language})</headline>{areas}</info>"
    )


def area_xml(
    desc: str = "Mission",
    *,
    polygon: str | None = None,
    circle: str | None = None,
    geocode: tuple[str, str] | None = None,
) -> str:
    parts = [f"<areaDesc>{desc}</areaDesc>"]
    parts += [f"<polygon>{polygon}</polygon>"] if polygon else []
    parts += [f"<circle>{circle}</circle>"] if circle else []
    if geocode:
        parts.append(
            f"<geocode><valueName>{geocode[0]}</valueName><value>{geocode[1]}</value></geocode>"
        )
    return f"<area>{''.join(parts)}</area>"


def mapping(**sections: Any) -> CapMapping:
    return parse_cap_mapping({"source": {"system": "cap-test"}, **sections})


def convert(xml: str | bytes, cap_mapping: CapMapping | None = None) -> Converted:
    """The one alert of a document converted (raises ``AlertReject``)."""
    data = xml.encode() if isinstance(xml, str) else xml
    (found,) = alerts_in(parse(data))
    return AlertConverter(cap_mapping or mapping()).convert(found)


# --- watchers -------------------------------------------------------------------------------

IN_ACCESS, IN_OPEN = 0x1, 0x20
IN_NONBLOCK = 0o4000


class FileWatch:
    """inotify on one file: ``touched()`` says whether any process opened or read it since."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(IN_NONBLOCK)
        if (
            self.fd < 0
            or libc.inotify_add_watch(self.fd, str(path).encode(), IN_OPEN | IN_ACCESS) < 0
        ):
            raise OSError(ctypes.get_errno(), "inotify unavailable")

    def touched(self) -> bool:
        try:
            return bool(os.read(self.fd, 4096))
        except BlockingIOError:
            return False

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Recorder:
    """A local HTTP server's log, and what it serves: path -> (status, headers, body)."""

    url: str = ""
    hits: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)


@contextmanager
def recording_server() -> Iterator[Recorder]:
    recorder = Recorder()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.hits.append((self.path, dict(self.headers)))
            status, headers, body = recorder.routes.get(self.path, (404, {}, b""))
            etag = headers.get("ETag")
            if etag and self.headers.get("If-None-Match") == etag:
                status, body = 304, b""
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
