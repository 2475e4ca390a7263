"""telemetry service."""
