"""``/v1/feeds/warnings.atom``: the open warnings in the caller's reach as an Atom feed
(feedgen), each entry the current CAP alert of one warning: its headline and description in the
caller's language (``Accept-Language``: zh-CN or en), a link to the alert itself.

Conditional: the ``ETag`` is a hash of the feed, so a reader polling with ``If-None-Match`` gets
304 until a warning changes; ``Cache-Control: private`` (the feed is the caller's own reach).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from feedgen.ext.base import BaseEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree
from starlette.responses import Response

from hub.api.cap import alert_of
from hub.api.cap_xml import CAP_MEDIA_TYPE, CAP_NS, AlertSource
from hub.api.deps import SettingsDep
from hub.api.errors import problem_responses
from hub.api.events import ReadAccess
from hub.api.geojson import absolute_url
from hub.api.params import StatusParam
from hub.i18n import Language, negotiate, translate
from hub.settings import Settings
from hub.store import cap_alerts, warning_queries
from hub.store.warning_queries import WarningFilter, WarningRow

router = APIRouter(tags=["warnings"])

ATOM_MEDIA_TYPE = "application/atom+xml"
ATOM_NS = "http://www.w3.org/2005/Atom"
MAX_ENTRIES = 500  # the open warnings of a region: a few dozen on a bad day
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CACHE = {"Cache-Control": "private, no-cache", "Vary": "Accept-Language, Authorization"}


class EntryLinks(BaseEntryExtension):
    """An entry's links with their ``rel`` and ``type``: feedgen 1.0.0 writes an entry's
    links with ``href`` alone (a shadowed variable in ``FeedEntry.atom_entry``)."""

    def __init__(self) -> None:
        self.links: list[dict[str, str]] = []

    def extend_atom(self, entry: etree._Element) -> etree._Element:
        for attributes in self.links:
            etree.SubElement(entry, f"{{{ATOM_NS}}}link", attributes)
        return entry


def _entry(feed: FeedGenerator, alert: etree._Element, language: Language, url: str) -> datetime:
    info = next(
        i
        for i in alert.iter(f"{{{CAP_NS}}}info")
        if i.findtext(f"{{{CAP_NS}}}language") == language
    )
    sent = datetime.fromisoformat(alert.findtext(f"{{{CAP_NS}}}sent") or "")
    entry = feed.add_entry(order="append")
    entry.id(f"urn:uuid:{alert.findtext(f'{{{CAP_NS}}}incidents')}")
    entry.title(info.findtext(f"{{{CAP_NS}}}headline"))
    entry.summary(info.findtext(f"{{{CAP_NS}}}description"))
    entry.updated(sent)
    entry.published(sent)
    entry.category(term=info.findtext(f"{{{CAP_NS}}}category"))
    entry.register_extension("hub", extension_class_entry=EntryLinks, rss=False)
    entry.hub.links += [
        {"href": f"{url}?f=cap", "rel": "alternate", "type": CAP_MEDIA_TYPE},
        {"href": url, "rel": "related", "type": "application/geo+json"},
    ]
    entry.content(alert.findtext(f"{{{CAP_NS}}}identifier"), type="text")
    return sent


def _feed(
    request: Request, settings: Settings, access: Any, rows: list[WarningRow], lang: Language
) -> bytes:
    feed = FeedGenerator()
    self_url = absolute_url(request, settings, request.url.path)
    feed.id(self_url)
    feed.title(translate(lang, "feed.warnings.title"))
    feed.subtitle(translate(lang, "feed.warnings.subtitle"))
    feed.author(name=translate(lang, "feed.warnings.author"))
    feed.link(href=self_url, rel="self", type=ATOM_MEDIA_TYPE)
    feed.language(lang)
    series = cap_alerts.series_of(access.session, [w.incident.id for w in rows])
    latest = EPOCH
    for warning in rows:
        there = request.app.url_path_for("get_incident", incident_id=str(warning.incident.id))
        url = absolute_url(request, settings, there)
        source = AlertSource(warning.incident, True, warning.neighbours, settings.cap_sender, url)
        alert = alert_of(access, settings, source, series.get(warning.incident.id, []), sign=False)
        latest = max(latest, _entry(feed, alert, lang, url))
    feed.updated(latest)  # the newest alert's, not the clock's: an unchanged feed is identical
    body: bytes = feed.atom_str(pretty=True)
    return body


def _matches(if_none_match: str | None, etag: str) -> bool:
    if if_none_match is None:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


@router.get(
    "/v1/feeds/warnings.atom",
    name="warnings_feed",
    summary="Open warnings as an Atom feed of CAP alerts",
    description="The open warnings in the caller's reach (as `/v1/warnings`, newest change "
    f"last, at most {MAX_ENTRIES}), one entry each: the CAP alert's headline and description "
    "in the language of `Accept-Language` (zh-CN or en; default en), a link to the CAP 1.2 "
    "alert (`rel=alternate`, `application/cap+xml`) and to the incident. `ETag` and "
    "`If-None-Match`: 304 while nothing changed.",
    response_class=Response,
    responses={
        200: {"content": {ATOM_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        304: {"description": "Not Modified: the feed is as the `If-None-Match` ETag says"},
        **problem_responses(400, 401, 403, 429, 500),
    },
)
def warnings_feed(
    request: Request,
    settings: SettingsDep,
    access: ReadAccess,
    status: StatusParam = "actual",
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    rows, _ = warning_queries.list_warnings(
        access.session,
        WarningFilter(status=status),
        after_seq=None,
        limit=MAX_ENTRIES,
        visible=access.warnings,
    )
    request.state.audit_rows = len(rows)
    language = negotiate(request.headers.get("accept-language"))
    body = _feed(request, settings, access, rows, language)
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {"ETag": etag, "Content-Language": language, **CACHE}
    if _matches(if_none_match, etag):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type=ATOM_MEDIA_TYPE, headers=headers)
