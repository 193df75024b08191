"""Fusion: consume hub.events.v1 in batches and fuse them into PostGIS, effectively once.

The stream: worker.py (the loop: poll, decode, store, dead-letter), writer.py (the writer
thread: batch N is stored while N+1 is polled and decoded), decode.py (bytes -> validated
polars frame + rejects), assign.py (communities and grid cells), sink.py (one PostgreSQL
transaction per batch, offsets included), dlq.py (dead letters), metrics.py.

The picture, as stages of that transaction (stages.py): warnings.py (sensor thresholds,
warning flags), the ``incident`` package (the incident model and its stage; rules.py holds its
correlation rules), risk.py / risk_stage.py, resources.py. recluster.py partitions the stored
picture again after the rules change.
"""
