"""The audit trail: every /v1 and /ogc access, in a hash-chained, append-only log.

``chain`` (the pure hashing and verification), ``record`` (what a request's row says),
``store`` (PostgreSQL); the API's middleware that records each request is
``hub.api.audit_middleware`` (``install_audit(app, settings)``), and ``hub audit verify`` is in
``hub.cli.audit``.
"""
