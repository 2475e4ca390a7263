"""The workflow runner: OSSA Workflow manifests as durable runs on the bus."""
