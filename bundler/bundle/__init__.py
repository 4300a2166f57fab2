"""The bundle format v1: layout constants, the manifest model, writing, reading and verifying."""
