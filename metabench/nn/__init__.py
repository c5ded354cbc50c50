"""Shared networks and functional helpers."""
