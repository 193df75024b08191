"""The access layer: who the caller is and what it may see.

``principal`` (the verified caller: kind, scopes, its community or jurisdiction), ``reach``
(what a principal may see of each resource, compiled to SQL predicates that ``hub.store``'s
queries take; the store itself knows no principal), ``session`` (row-level security set on a
transaction for a principal, and :func:`~hub.access.session.open_reach`, the one call a reader
makes). Below ``hub.api`` and ``hub.auth`` (which builds principals from tokens); above
``hub.store``.
"""
