"""Conversions between ldmlab models and other libraries' formats (diffusers)."""
