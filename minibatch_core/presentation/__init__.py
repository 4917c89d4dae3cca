"""presentation layer."""
