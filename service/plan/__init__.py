"""Planning a migration: what will be moved, in which order, and roughly how long it takes."""
