"""relay service."""
