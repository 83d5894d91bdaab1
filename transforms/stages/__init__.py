"""The stages an event goes through: parse → validate → normalize (``batch.process_batch``), then dedupe."""
