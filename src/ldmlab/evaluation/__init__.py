"""Guidance-scale sweeps of a trained LDM: samples per scale → fidelity metrics → tables and plots."""
