"""Suites: YAML read into frozen, typed configs, validated once at the edge."""
