"""Row quality on the way: conforming batches to the target's types (rules, transforms and
duplicate detection build on this stage)."""
