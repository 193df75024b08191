"""The audit trail: every /v1 and /ogc access, in a hash-chained, append-only log.

``chain`` (the pure hashing and verification), ``record`` (what a request's row says),
``store`` (PostgreSQL), ``middleware`` (``install_audit(app, settings)``), and ``hub audit
verify`` in ``hub.cli.audit``.
"""
