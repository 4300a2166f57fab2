"""bundler: carry software across an air gap as one signed, verified bundle file."""

__version__ = "0.1.0"
