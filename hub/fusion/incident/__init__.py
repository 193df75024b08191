"""The incident model and the incident stage of fusion, as a package without cycles.

Bottom to top (a module imports only those above it in this list, and ``hub.fusion.rules``):

- leaves: ``geodesy`` (great-circle distances, shared with the compiled pass), ``ids``
  (incident seed ids and source keys);
- ``model``: the model on single reports (the link rule, verification, severity, the
  incremental invariant fusion relies on);
- the column code, the same model on polars frames: ``twins`` (exact repeats), ``partition``
  (incidents without chaining, compiled), ``links`` (links and linked neighbourhoods),
  ``summaries`` (what an incident row holds);
- ``reference``: the model on ``Report`` objects through the column code (for tests and
  benchmarks);
- rows and SQL: ``report_rows`` (reports read from the batch and the store),
  ``incident_rows`` (incident rows written), ``decisions`` (operators' verifications and
  splits), ``linking`` (what a batch changes), ``cache`` (neighbourhoods of recent batches),
  ``stage_sql`` (the stage's plain SQL: timeline, merges, cancels, memberships);
- ``stage``: ``IncidentStage``, the stage of fusion's batch transaction.
"""
