"""One delivery attempt: the body signed per Standard Webhooks and POSTed to the address the
target check approved.

The target is checked again here (``hub.access.targets``: DNS may have changed since the
subscription was made) and the request goes to the very address checked, the URL's host kept
in ``Host`` and, for https, in the TLS server name (SNI and certificate check), so that a
second DNS answer cannot send it elsewhere (rebinding). Redirects are not followed (a
redirect to an internal address would undo the check): a 3xx is a failure like any non-2xx.
The whole attempt, connection to last header, is bounded by ``HUB_WEBHOOK_TIMEOUT_S``; the
response body is never read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import httpx
from standardwebhooks.webhooks import Webhook

from hub.access import targets

Outcome = Literal["delivered", "failed", "refused"]
USER_AGENT = "community-risk-hub-webhooks/1"


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    status_code: int | None
    error: str | None
    duration_ms: float


def signed_headers(secret: str, webhook_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of ``body`` (the timestamp of this attempt)."""
    signature = Webhook(secret).sign(webhook_id, now, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


def _pinned(target: targets.Target) -> tuple[httpx.URL, dict[str, str], dict[str, str]]:
    """The URL with the checked address as host, the Host header, the request extensions."""
    url = httpx.URL(target.url)
    host = url.netloc.decode("ascii").rsplit("@", 1)[-1]
    pinned = url.copy_with(host=target.addresses[0].split("%", 1)[0])
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return pinned, {"host": host}, extensions


async def send(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    webhook_id: str,
    body: bytes,
    allowed: Sequence[str],
    timeout_s: float,
) -> Attempt:
    """POST ``body`` to ``url`` once; never raises for what the receiver or network does."""
    started = time.perf_counter()

    def took() -> float:
        return (time.perf_counter() - started) * 1000

    try:
        target = await asyncio.to_thread(targets.check, url, allowed)
    except targets.TargetRefused as exc:
        return Attempt("refused", None, str(exc), took())
    pinned, headers, extensions = _pinned(target)
    headers |= signed_headers(secret, webhook_id, body, datetime.now(UTC))
    try:
        async with asyncio.timeout(timeout_s):
            request = client.build_request(
                "POST", pinned, content=body, headers=headers, extensions=extensions
            )
            response = await client.send(request, stream=True)
            await response.aclose()  # the status is all we need; the body is never read
    except TimeoutError:
        return Attempt("failed", None, f"no answer within {timeout_s:g} s", took())
    except httpx.HTTPError as exc:
        return Attempt("failed", None, f"{type(exc).__name__}: {exc}"[:500], took())
    if 200 <= response.status_code < 300:
        return Attempt("delivered", response.status_code, None, took())
    return Attempt("failed", response.status_code, f"HTTP {response.status_code}", took())
