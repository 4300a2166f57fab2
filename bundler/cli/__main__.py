"""`python -m bundler.cli`: what the `bundler` script runs."""

from bundler.cli import main

main()
