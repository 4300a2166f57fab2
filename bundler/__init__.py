"""bundler: carry software across an air gap as one signed, verified bundle file."""

__version__ = "0.1.0"
CLI_MODULE = "bundler.cli"  # what the `bundler` script runs: `python -m bundler.cli` (services, units)
