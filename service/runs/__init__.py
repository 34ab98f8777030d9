"""One migration's lifecycle: its spec, its run over every table, its events."""
