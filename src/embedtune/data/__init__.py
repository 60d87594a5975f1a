"""Data formats, validation, splits and preparation."""
