"""Fixtures of the SLURM tests (defined in _slurmlib.py, which the tests also import helpers from)."""

from _slurmlib import nodes, slurm_conf, smad  # noqa: F401 - pytest fixtures
