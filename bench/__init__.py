"""Parity and latency harness (``remamber-deploy bench``): runtimes, statistics, reports, baselines.

See bench/README.md. Installed as ``remamber.bench`` (a flat package: modules directly in bench/).
"""
