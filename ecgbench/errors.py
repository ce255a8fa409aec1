"""Errors ecgbench raises on purpose: each names the file, key or record and the fix."""

from __future__ import annotations


class EcgbenchError(Exception):
    """Base class: an expected failure the CLI reports in one line."""

    exit_code = 1


class ConfigError(EcgbenchError):
    """A suite, profile or plugin config is invalid (exit code 2)."""

    exit_code = 2


class PluginError(EcgbenchError):
    """A plugin is missing, misbehaves, or two plugins claim the same name."""

    exit_code = 2


class DatasetError(EcgbenchError):
    """A dataset folder, record or label cannot be used."""


class CompressionError(EcgbenchError):
    """A compression strategy cannot apply to the model it was given."""


class StoreError(EcgbenchError):
    """The result store cannot be opened or does not hold what was asked."""
