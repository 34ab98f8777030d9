"""Per-table streaming engine: producer -> stage -> N writers over bounded channels, with a pause gate."""
