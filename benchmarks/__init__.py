"""Benchmarks of GAN Workbench, each a ratio against a reference measured in the same run.

``python -m benchmarks`` (``make bench``) runs them; see ``benchmarks/__main__.py``
for the options and BENCHMARKS.md for the method and the latest results.
"""
