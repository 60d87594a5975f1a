"""Model loading: names, local folders, prefixes."""
