"""The harness behind ``benchmarks/bench.py``: shared timing and memory probes, matched diffusers models,
the side-by-side cases (case_*) and the suites (suite_*)."""
