"""Builders that turn what users hold (code, documents, QA files) into retrieval sets."""
