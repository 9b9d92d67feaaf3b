"""CLI command modules; each exposes ``register(app)``. See exposure_cli/cli.py."""
