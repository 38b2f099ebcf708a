"""Subcommands of the ``nrnn`` command line, one module each (see :mod:`nrnn_theory.cli`)."""
