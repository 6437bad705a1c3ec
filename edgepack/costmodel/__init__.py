"""The cost model: per-op latency estimates for a device profile (estimate.py) and fitting the
per-core tables to published figures (fit.py). Read by the ``estimate`` device and the pipeline."""
