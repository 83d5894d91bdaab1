"""Reading the input: file patterns, formats and compression, and the readers that turn files into batches."""
