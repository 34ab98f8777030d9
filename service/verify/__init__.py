"""Verification: proof that the target holds the source's rows minus the reported rejects."""
