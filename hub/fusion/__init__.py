"""Fusion: consume hub.events.v1 in batches and fuse them into PostGIS, effectively once.

consumer.py (Kafka side: group membership, seeking to the offsets stored in PostgreSQL),
decode.py (bytes -> validated polars frame + rejects), assign.py (communities),
sink.py (one PostgreSQL transaction per batch), dlq.py (dead letters), worker.py (the loop).
"""
