"""The Pub/Sub import: pull messages, process them with ``stages.batch``, land them in BigQuery, MERGE."""
