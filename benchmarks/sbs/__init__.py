"""Side-by-side helpers for ``benchmarks/bench.py``: timing, memory, matched diffusers models, cases."""
