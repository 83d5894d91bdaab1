"""The BigQuery sink: tables, jobs, load + the write transaction, the run's claim, the Pub/Sub landing table."""
