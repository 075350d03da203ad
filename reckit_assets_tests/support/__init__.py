"""Fixtures shared by the pipeline's tests, the service's tests and the benchmarks.

The product (``reckit_assets``, ``serving``) never imports this package
(``architecture/test_layers.py`` checks serving).
"""
