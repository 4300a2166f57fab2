"""YAML the project writes itself and reads back (site.yaml, the cluster's files, Flux sources, the
registry's configuration), through libyaml's C emitter and parser when PyYAML carries them (the same
documents in a fraction of the time: an import rewrites several). YAML from outside (a profile, a
chart's files) goes through bundler.untrusted or the profile's own loader instead."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from bundler.jsontypes import Out

_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
Error = yaml.YAMLError


def dump(doc: Out, sort_keys: bool = False) -> str:
    """One document as `yaml.safe_dump` writes it (keys in the order given unless `sort_keys`)."""
    return str(yaml.dump(doc, Dumper=_DUMPER, sort_keys=sort_keys))


def dump_all(docs: Sequence[Out]) -> str:
    """Several documents, `---` between them, keys in the order given."""
    return str(yaml.dump_all(docs, Dumper=_DUMPER, sort_keys=False))


def load(text: str) -> object:
    """A document this project wrote (as `yaml.safe_load`; raises `Error`)."""
    return yaml.load(text, Loader=_LOADER)
