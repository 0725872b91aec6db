"""Benchmarks, one module per open question; run each from the repository root as
``python -m bench.NAME`` (``make bench`` runs the open ones). ``replay`` is imported by the tests."""
