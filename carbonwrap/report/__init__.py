"""Presenting a run: the record, the summary, the sinks."""
