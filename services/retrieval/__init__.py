"""Retrieval: text extraction, chunking and (next) indexing and search for vector stores."""
