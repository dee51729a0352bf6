"""Guidance methods that combine conditional and unconditional model outputs."""
