"""Structured pruning internals: dependency groups, importance, costs and model surgery."""
