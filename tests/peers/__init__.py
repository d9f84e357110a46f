"""Helpers that run the project's peers (GridLAB-D) on its inputs, for cross-tool tests."""
