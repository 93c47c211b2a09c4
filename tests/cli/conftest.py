"""The CLI tests' fixtures: the environment a command reads, and its database."""

from tests.cli.helpers import clean_env, cli_database, cli_env, no_server

__all__ = ["clean_env", "cli_database", "cli_env", "no_server"]
