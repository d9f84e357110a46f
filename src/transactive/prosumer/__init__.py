"""The generalized prosumer model and virtual-battery aggregation (paper §3.2)."""
