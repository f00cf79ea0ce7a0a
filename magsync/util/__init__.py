"""Leaves: time, JSON, logging, memory and country helpers; no other magsync imports."""
