"""Helpers shared by the end-to-end tests (and scripts they run in subprocesses)."""
