"""Hard-negative mining (``embedtune mine``): dense, BM25 or merged candidates, filtered, written as a training file.

The filters are sentence-transformers' ``mine_hard_negatives`` rules (same option names).

It sits above data, models, the embedding cache and search: :mod:`~embedtune.mining.mine` (inputs, settings, the
run), :mod:`~embedtune.mining.candidates` (dense and BM25 candidates, merge, exclusions, margins, sampling),
:mod:`~embedtune.mining.output` (examples, hardness weights, statistics), :mod:`~embedtune.mining.bm25` (BM25 via
``bm25s``). Dense search is the one top-k engine, :mod:`embedtune.search.top_k`.
"""
