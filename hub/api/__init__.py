"""The hub's HTTP API (FastAPI); :func:`hub.api.factory.create_app` builds it."""
