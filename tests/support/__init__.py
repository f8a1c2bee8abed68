"""Helpers several test packages share (real processes started for tests)."""
