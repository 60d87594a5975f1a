"""embedtune: fine-tune text-embedding models for retrieval, evaluated against the untouched base model."""

__version__ = "0.1.0"
