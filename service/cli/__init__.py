"""The `migrator` command line."""
