"""Shared test configuration."""

pytest_plugins = ["tmd.localkube.testing"]
