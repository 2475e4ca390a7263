"""Conversation state in JetStream KV: threads, messages, runs and run steps (shared by relay and executor)."""
