"""The file sink: rows as Parquet, dead letters and conflicts as NDJSON, under one folder."""
