"""Helpers for running real local servers (the `demo` command and the integration tests)."""
