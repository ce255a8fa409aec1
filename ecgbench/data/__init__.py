"""Turning dataset records into cached, preprocessed, split arrays."""
