"""Discrete noise schedules: one file per kind, all subclasses of ``NoiseSchedule``."""
