"""Declarations of the event schema: the envelope (one source of truth) and what derives from it."""
