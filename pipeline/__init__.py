"""The import job: options, the pipeline graph, the run report and the entry point."""
