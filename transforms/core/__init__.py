"""What every role shares: option value types, batches and dead letters, time, coders, progress, work files."""
