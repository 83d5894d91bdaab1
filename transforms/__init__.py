"""The import's transforms, by role. An event goes through them in this order:

- ``sources``: find and open the input files, read them into batches of lines or records
  (``files``, ``read``, ``read_csv``, ``read_parquet``; the Beam read is ``read_fn``).
- ``stages``: ``batch.process_batch`` runs one batch through ``parse`` → ``validate`` → ``normalize``
  (with ``labels``, ``urls``, ``agents``, ``privacy``, ``row_policy``); ``dedupe`` keeps one row per
  eventId (its Beam side is ``shuffle``); ``dofns`` wraps ``process_batch`` for Beam.
- ``bigquery``: the BigQuery sink and everything that speaks to BigQuery (tables, load jobs, the write
  transaction, the claim of a run, the landing table of a Pub/Sub import).
- ``files``: the file sink (Parquet rows, NDJSON dead letters and conflicts).
- ``pubsub``: the Pub/Sub import: messages through ``process_batch``, landed, then MERGEd.
- ``core``: what they all share: the option value types (``settings``), batches and dead letters
  (``records``), time conversion, coders, progress lines, work files.

A module imports from ``core`` and from the roles before it in this list, with one exception: the
readers of JSON arrays and replay files decode what they read with the parse stage's own functions
(``stages.parse``), so that a record parses the same whichever file it came in. No sink imports the
other, nothing imports ``pipeline``; ``pipeline.graph`` chains the roles into the Beam pipeline.
"""
