from __future__ import annotations

import json
import time

import pytest
from sentence_transformers import SentenceTransformer

from embedtune.cli import main


@pytest.fixture()
def encode_calls(monkeypatch) -> list[int]:
    """Record the number of texts of every ``SentenceTransformer.encode`` call (still encoding them)."""
    calls: list[int] = []
    real = SentenceTransformer.encode

    def spy(self, inputs, *args, **kwargs):
        calls.append(len(inputs))
        return real(self, inputs, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", spy)
    return calls


def eval_argv(model_dir, beir, *extra: str) -> list[str]:
    return ["eval", "--model", str(model_dir), "--data", f"{beir}:train", "--no-baseline", *extra]


def test_eval_twice_encodes_nothing_the_second_time(tiny_model_dir, tiny_beir, cache_dir, encode_calls, capsys):
    started = time.perf_counter()
    assert main(eval_argv(tiny_model_dir, tiny_beir, "--cache-dir", str(cache_dir))) == 0
    first_seconds = time.perf_counter() - started
    first = capsys.readouterr().out
    assert sorted(encode_calls) == [10, 14]  # the judged queries, the corpus
    encode_calls.clear()
    started = time.perf_counter()
    assert main(eval_argv(tiny_model_dir, tiny_beir, "--cache-dir", str(cache_dir))) == 0
    second_seconds = time.perf_counter() - started
    assert encode_calls == [] and capsys.readouterr().out == first
    assert "beir:train: 10 queries, 14 documents" in first
    print(f"embedtune eval on the tiny data: first {first_seconds:.3f} s, second {second_seconds:.3f} s")


def test_eval_uses_the_environments_cache_and_no_cache_bypasses_it(
    tiny_model_dir, tiny_beir, cache_dir, encode_calls, capsys
):
    assert main(eval_argv(tiny_model_dir, tiny_beir)) == 0  # default root: $EMBEDTUNE_CACHE_DIR
    assert len(list(cache_dir.rglob("*.emb"))) == 2
    first = capsys.readouterr().out
    encode_calls.clear()
    assert main(eval_argv(tiny_model_dir, tiny_beir, "--no-cache")) == 0
    assert sorted(encode_calls) == [10, 14] and capsys.readouterr().out == first
    assert main(eval_argv(tiny_model_dir, tiny_beir, "--no-cache", "--cache-dir", "x")) == 2  # exclusive


def test_a_changed_prompt_misses_the_cache(tiny_model_dir, tiny_beir, cache_dir, encode_calls, capsys):
    assert main(eval_argv(tiny_model_dir, tiny_beir)) == 0
    encode_calls.clear()
    assert main(eval_argv(tiny_model_dir, tiny_beir, "--query-prefix", "query: ")) == 0
    assert sorted(encode_calls) == [10, 14]  # the fingerprint covers every prompt, so both roles miss


def test_cache_info_and_clear(tiny_model_dir, tiny_beir, cache_dir, capsys):
    assert main(["cache", "info"]) == 0
    assert "0 embeddings, 0 model fingerprints" in capsys.readouterr().out
    assert main(eval_argv(tiny_model_dir, tiny_beir)) == 0
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    printed = capsys.readouterr().out
    assert str(cache_dir) in printed and "24 embeddings, 1 model fingerprints" in printed
    assert "14 documents, 10 queries" in printed and "of 2.0 GiB in 2 chunks" in printed
    assert main(["cache", "--cache-dir", str(cache_dir), "info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["entries"] == 24 and info["fingerprints"] == 1 and info["models"][0]["entries"]["query"] == 10
    assert main(["cache", "clear"]) == 0
    assert "3 files" in capsys.readouterr().out
    assert not list(cache_dir.rglob("*.emb"))
    assert main(["cache", "info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 0
