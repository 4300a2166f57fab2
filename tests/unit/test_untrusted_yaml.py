"""YAML from outside (a chart's files, a repository's index) read with bounded size and alias expansion."""

from __future__ import annotations

import pytest

from bundler.untrusted import Malformed, load_yaml

BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10)) + "top: *a9\n")


@pytest.mark.parametrize(("text", "message"), [
    (BOMB, "alias bomb"),
    ("a: [1, 2\n", "not YAML"),
    ("a: 1\n---\nb: 2\n", "not YAML"),  # one document only
    ("x" * 2000, "larger than"),
    ("[" * 5000 + "]" * 5000, "nested too deep"),
])
def test_refusals_name_the_reason(text: str, message: str) -> None:
    with pytest.raises(Malformed, match=message):
        load_yaml(text.encode(), 1000 if text.startswith("x") else 1 << 20)


def test_a_document_with_a_few_aliases_reads_as_pyyaml_reads_it() -> None:
    text = b"base: &b {image: nginx, tag: '1.25'}\nweb: *b\nworker: *b\nlist: [1, 2, 3]\n"
    assert load_yaml(text, 1 << 20) == {"base": {"image": "nginx", "tag": "1.25"}, "web": {"image": "nginx",
                                        "tag": "1.25"}, "worker": {"image": "nginx", "tag": "1.25"},
                                        "list": [1, 2, 3]}
    assert load_yaml(b"", 10) is None


def test_a_large_index_without_aliases_is_not_mistaken_for_a_bomb() -> None:
    entries = "".join(f"  - {{name: c{i}, version: 1.0.{i}, urls: [c{i}.tgz]}}\n" for i in range(15_000))
    doc = load_yaml(f"entries:\n  thing:\n{entries}".encode(), 100 << 20)  # 135,000 values, none aliased
    assert len(doc["entries"]["thing"]) == 15_000
