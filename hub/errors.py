"""The root of every error the hub raises on purpose, and a few kinds that say what went wrong.

A leaf: it imports nothing, so every package (connectors, geo and schemas included) may base
its errors here. Code that catches "anything the hub reports as a problem" catches
:class:`HubError`; the HTTP API maps the kinds below to status codes in one table
(``hub.api.errors``). An error that used to be a ``ValueError``, ``KeyError`` or
``RuntimeError`` keeps that base as well (``class MappingError(ConfigError, ValueError)``), so
callers catching the builtin still catch it.

The kinds deliberately have no builtin base of their own: giving ``NotFound`` a ``LookupError``
base would make every ``except LookupError`` catch it, which no caller asked for.
"""

from __future__ import annotations


class HubError(Exception):
    """A problem the hub detected and describes; the message is meant for a person to read."""


class ConfigError(HubError):
    """A configuration file or setting cannot be used (a server-side mistake, not the caller's)."""


class InvalidInput(HubError):
    """What was given (a request, a file to import, an argument) is not acceptable."""


class Unauthenticated(HubError):
    """The caller could not be identified: no usable credentials."""


class NotAllowed(HubError):
    """The caller is known but may not do this."""


class NotFound(HubError):
    """What was asked for does not exist."""


class NotAcceptable(HubError):
    """What was asked for exists, but not in any form the caller accepts."""


class Conflict(HubError):
    """The request clashes with the current state (another holder, another version)."""


class TooLarge(HubError):
    """What was given is beyond a size limit."""


class Unavailable(HubError):
    """A service the hub relies on (the event log, the broker) cannot be reached now; a retry
    later may succeed."""
