"""dispatcher service."""
