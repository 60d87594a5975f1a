"""Encoding and top-k search."""
