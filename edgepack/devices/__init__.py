"""Devices that run models and the one result schema they all return."""
