"""Fusion: consume hub.events.v1 in batches and fuse them into PostGIS, effectively once.

The stream: worker.py (the loop: poll, decode, store, dead-letter), pipeline.py (the writer
thread), decode.py (bytes -> validated polars frame + rejects), assign.py (communities and grid
cells), sink.py (one PostgreSQL transaction per batch, offsets included), dlq.py (dead
letters), metrics.py. The picture, as stages of that transaction (stages.py): warnings.py
(sensor thresholds, warning flags), incidents.py (the incident stage) with report_rows.py,
linking.py (what a batch changes), twins.py (exact repeats), decisions.py, incident_rows.py
and neighbourhood_cache.py (what the last batches wrote, kept in memory); the model it runs
is correlate.py (links, seeds, the incremental invariant), links.py (links and neighbourhoods
on columns), partition.py (incidents without chaining, compiled) and summaries.py; risk.py /
risk_stage.py; resources.py.
recluster.py partitions the stored picture again after the rules change.
"""
