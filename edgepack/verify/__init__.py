"""Checks of a built model against the float model."""
