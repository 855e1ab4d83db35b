"""Placeholder module: its owner fills in the plugin (registers nothing yet)."""
