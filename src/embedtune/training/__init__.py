"""Training loop, configuration and run folders."""
