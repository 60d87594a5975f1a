from __future__ import annotations

from pathlib import Path

import pytest

from embedtune.data.builders.stdlib_code import (
    SPLITS,
    CodeFunction,
    assign_split,
    build_stdlib_retrieval_set,
    extract_functions,
    first_sentence,
    is_usable_query,
    iter_stdlib_modules,
)

FAKE_MODULE = '''\
"""A fake module."""

import functools


def add_numbers(a, b):
    """Add two numbers together and return the sum. More text here.

    Args:
        a: first.
    """
    total = a + b
    # a comment stays
    return total


def _private_helper(x):
    """Compute something private for internal use only."""
    y = x * 2
    return y


def stub(x):
    """This function body is only a placeholder."""
    pass


def short(x):
    """Return the input value unchanged, always."""
    return x


def undocumented(x):
    y = x + 1
    z = y + 1
    return z


def tiny():
    """Too short."""
    a = 1
    return a


def example(x):
    """>>> example(1) returns two for the given input."""
    y = x + 1
    return y


class Greeter:
    """Says hello."""

    def __init__(self, name):
        """Store the name for later greetings."""
        self.name = name

    @functools.lru_cache
    def greet(self, loud=False):
        """Build a friendly greeting for the stored name.

        Long description.
        """
        text = "hello " + self.name
        return text.upper() if loud else text

    def _secret(self):
        """Return a secret greeting for the stored name."""
        text = "psst " + self.name
        return text


class _Hidden:
    def visible_method(self):
        """Return a value from a hidden class method."""
        value = 1
        return value
'''


def write_module(folder: Path, relative: str, text: str) -> Path:
    path = folder / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_extract_functions_exact(tmp_path):
    path = write_module(tmp_path, "fake.py", FAKE_MODULE)
    functions = extract_functions(path, "fake")
    assert functions == [
        CodeFunction(
            module="fake",
            qualname="add_numbers",
            query="Add two numbers together and return the sum.",
            document="def add_numbers(a, b):\n    total = a + b\n    # a comment stays\n    return total",
        ),
        CodeFunction(
            module="fake",
            qualname="Greeter.greet",
            query="Build a friendly greeting for the stored name.",
            document=(
                "@functools.lru_cache\n"
                "def greet(self, loud=False):\n"
                '    text = "hello " + self.name\n'
                "    return text.upper() if loud else text"
            ),
        ),
    ]
    assert functions[0].query_id == "q:fake.add_numbers"
    assert functions[1].doc_id == "d:fake.Greeter.greet"


def test_extract_functions_skips_broken_files(tmp_path):
    broken = write_module(tmp_path, "broken.py", "def f(:\n    pass\n")
    undecodable = tmp_path / "latin.py"
    undecodable.write_bytes(b'def f():\n    """Caf\xe9 is a word with an accent here."""\n    return 1\n')
    assert extract_functions(broken, "broken") == []
    assert extract_functions(undecodable, "latin") == []


def test_docstring_sharing_a_line_with_code_is_skipped(tmp_path):
    text = 'def f(x):\n    """Return the value plus one, quickly."""; y = x\n    y += 1\n    return y\n'
    path = write_module(tmp_path, "inline.py", text)
    assert extract_functions(path, "inline") == []


def test_first_sentence_and_query_filters():
    assert first_sentence("Return the  value.\nOf x. More.\n\nBody.") == "Return the value."
    assert first_sentence("Use e.g. a list here. Then more.") == "Use e.g. a list here."
    assert first_sentence("No full stop at all") == "No full stop at all"
    assert is_usable_query("Return the sum of two numbers.")
    assert not is_usable_query("Too short here.")
    assert not is_usable_query(" ".join(["word"] * 41))
    assert not is_usable_query("Run >>> f(1) in the shell.")
    assert not is_usable_query("sub(pattern, repl) -> str and so on.")
    assert not is_usable_query("Returns a date string, e.g.:")


def test_iter_stdlib_modules_names_and_exclusions(tmp_path):
    for relative in [
        "json/__init__.py",
        "json/decoder.py",
        "json/__main__.py",
        "os.py",
        "_private.py",
        "pkg/_impl.py",
        "test/test_os.py",
        "site-packages/thing.py",
        "idlelib/editor.py",
        "email/tests/case.py",
        "config-3.11/helper.py",
    ]:
        write_module(tmp_path, relative, "")
    modules = iter_stdlib_modules(tmp_path)
    assert modules == [
        ("json", tmp_path / "json/__init__.py"),
        ("json.decoder", tmp_path / "json/decoder.py"),
        ("os", tmp_path / "os.py"),
    ]


def test_assign_split_keeps_packages_together():
    for package in ["email", "json", "asyncio", "xml", "os"]:
        split = assign_split(package)
        assert split in SPLITS
        assert assign_split(f"{package}.sub") == split
        assert assign_split(f"{package}.sub.deeper") == split
    assert assign_split("anything", fractions=(0.0, 0.0, 1.0)) == "test"
    assert assign_split("anything", fractions=(1.0, 0.0, 0.0)) == "train"
    with pytest.raises(ValueError):
        assign_split("json", fractions=(0.5, 0.5))
    with pytest.raises(ValueError):
        assign_split("json", fractions=(0.5, 0.5, 0.5))


@pytest.fixture(scope="module")
def stdlib_set():
    return build_stdlib_retrieval_set()


def top_level_packages(retrieval_set, split):
    return {qid.removeprefix("q:").split(".", 1)[0] for qid in retrieval_set.qrels[split]}


def test_stdlib_splits_share_no_package_or_query(stdlib_set):
    packages = {split: top_level_packages(stdlib_set, split) for split in SPLITS}
    assert all(packages.values())
    assert not packages["train"] & packages["dev"]
    assert not packages["train"] & packages["test"]
    assert not packages["dev"] & packages["test"]
    query_ids = [set(stdlib_set.qrels[split]) for split in SPLITS]
    assert sum(len(ids) for ids in query_ids) == len(set().union(*query_ids)) == len(stdlib_set.queries)


def test_stdlib_set_is_consistent(stdlib_set):
    assert stdlib_set.source is None
    assert 0 < len(stdlib_set.qrels["train"]) <= 1200
    assert 0 < len(stdlib_set.qrels["dev"]) <= 150
    assert 0 < len(stdlib_set.qrels["test"]) <= 300
    for qrels in stdlib_set.qrels.values():
        for qid, judged in qrels.items():
            assert judged == {"d:" + qid.removeprefix("q:"): 1}
            assert all(doc_id in stdlib_set.corpus for doc_id in judged)
    texts = list(stdlib_set.queries.values())
    assert len({text.casefold() for text in texts}) == len(texts)
    assert len(set(stdlib_set.corpus.values())) == len(stdlib_set.corpus) == len(stdlib_set.queries)


def test_stdlib_set_is_deterministic(stdlib_set):
    assert build_stdlib_retrieval_set() == stdlib_set
    smaller = build_stdlib_retrieval_set(max_queries={"train": 10, "dev": 5, "test": 5}, seed=1)
    assert [len(smaller.qrels[split]) for split in SPLITS] == [10, 5, 5]
    assert smaller == build_stdlib_retrieval_set(max_queries={"train": 10, "dev": 5, "test": 5}, seed=1)
