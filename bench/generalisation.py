"""Generalisation benchmark: do gains reach test queries whose relevant documents were never training positives.

SciFact with embedtune's default recipe as the control. Each lever is scored on dev (whole corpus) and on test
(whole corpus), overall and on seen / unseen queries apart, with the paired randomisation test against the base
model and against the control; all from one process, same seed, same data split.

    .venv/bin/python bench/generalisation.py --control-run runs/<default SciFact run>   # reuse a finished control
    .venv/bin/python bench/generalisation.py                                            # train the control first
    .venv/bin/python bench/generalisation.py --control-run RUN --alphas 0.25,0.5,0.75,1

Levers here:
* ``wise-ft``: the control's model interpolated with the base (``train.interpolation``, arXiv:2109.01903) for each
  α; ``(auto)`` marks the α ``train.interpolation=auto`` picks on dev (best dev nDCG@10, ties to the smaller α).
* any lever trained as a run on the same data (``--run anchor=RUN`` for ``loss.anchor_weight``, a distillation
  run...), its model scored here the same way, optionally with its own WiSE-FT grid (``--interpolate anchor``).

With ``--forgetting`` every model is also scored out of domain, Δ vs the base with the paired test: KorQuAD 1.0
(converted to BEIR in a temporary folder at run time, never kept), all 5,774 questions against its 961 paragraphs,
where the offline models' English vocabularies make the base weak (Hangul splits into jamo); and English code search
over this interpreter's standard library (the demo's set: 2,054 docstring sentences, each finding its function's
source among 2,054), where the base has general English matching to lose.

    .venv/bin/embedtune train --data ../shared/datasets/scifact --name anchor2 --set loss.anchor_weight=2
    .venv/bin/python bench/generalisation.py --control-run RUN --run anchor2=runs/<anchor2 run> --interpolate anchor2
    .venv/bin/python bench/generalisation.py --control-run RUN --control-alphas 1 --alphas 0.75,1 \
        --run student=runs/<distilled run> --interpolate student --forgetting --ood code   # KorQuAD left out

Every figure printed is measured here; nothing is read from earlier benchmarks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCIFACT = ROOT.parent / "shared" / "datasets" / "scifact"
KORQUAD = ROOT.parent / "shared" / "datasets" / "korquad-v1.0" / "KorQuAD_v1.0_dev.json"
PRIMARY = "ndcg@10"
OUT_OF_DOMAIN = ("korquad", "code")
"""The ``--forgetting`` splits (:func:`out_of_domain_splits`)."""


def train_control(runs_dir: Path) -> Path:
    """Train the default recipe on SciFact and return its run folder."""
    from embedtune.config import build_config
    from embedtune.training.pipeline import run_training

    config = build_config(overrides=[f"data.path={SCIFACT}", "name=generalisation-control", f"runs_dir={runs_dir}"])
    return run_training(config).folder


def evaluate(model, split, cache, batch_size: int, precision: str = "fp32") -> dict[str, dict[str, float]]:
    """Per-query figures of ``model`` on ``split`` (whole corpus) at ``precision``: query id -> metric -> value."""
    from embedtune.evaluation.retrieval_evaluator import RetrievalEvaluator

    evaluator = RetrievalEvaluator(
        split.corpus,
        split.queries,
        split.qrels,
        name=split.name,
        metrics=[PRIMARY, "mrr@10", "recall@100"],
        primary_metric=PRIMARY,
        batch_size=batch_size,
        cache=cache,
        progress=False,
        precision=precision,
    )
    evaluator(model)
    return evaluator.last_per_query


def out_of_domain_splits(names=OUT_OF_DOMAIN) -> dict:
    """Return the out-of-domain evaluation splits ``names``, each ranking its whole corpus: ``{"korquad": ...}``.

    * ``korquad``: KorQuAD 1.0, every question (all article splits together) against its 961 paragraphs;
    * ``code``: English code search over this interpreter's standard library (the demo's data set,
      :func:`~embedtune.data.builders.stdlib_code.build_stdlib_retrieval_set`, every split together): a function's
      first docstring sentence finds its source (docstring removed), among all functions kept.
    """
    import tempfile

    from embedtune.data.beir import load_beir
    from embedtune.data.builders.squad import build_squad_beir
    from embedtune.data.builders.stdlib_code import build_stdlib_retrieval_set
    from embedtune.data.types import EvalSplit

    def whole(name: str, retrieval_set, source: str) -> EvalSplit:
        qrels = {query: judged for split in retrieval_set.qrels.values() for query, judged in split.items()}
        queries = {query: retrieval_set.queries[query] for query in qrels}
        return EvalSplit(name, retrieval_set.corpus, queries, qrels, source)

    splits = {}
    if "korquad" in names:
        with tempfile.TemporaryDirectory(prefix="embedtune-forgetting-") as work:
            folder = Path(work) / "korquad"
            build_squad_beir(KORQUAD, folder)
            splits["korquad"] = whole("korquad", load_beir(folder), f"{KORQUAD} (all questions)")
    if "code" in names:
        stdlib = f"Python {sys.version.split()[0]} standard library code search"
        splits["code"] = whole("code", build_stdlib_retrieval_set(max_queries={}), stdlib)
    return splits


def mean(per_query: dict[str, dict[str, float]], ids=None) -> float:
    ids = list(per_query) if ids is None else ids
    return sum(per_query[q][PRIMARY] for q in ids) / len(ids)


def compare(a: dict, b: dict, ids: list[str]) -> str:
    """``Δ +x.xxxx (p = y)`` of b over a on ``ids``."""
    from embedtune.evaluation.significance import compare_per_query

    result = compare_per_query({q: a[q][PRIMARY] for q in ids}, {q: b[q][PRIMARY] for q in ids}, metric=PRIMARY)
    return f"{result.mean_b - result.mean_a:+.4f} (p={result.p_permutation:.2g})"


def candidates(args, base, folder: Path):
    """Yield ``(label, α or None, model)`` to score: the control's WiSE-FT grid, then each lever run (and its grid)."""
    from sentence_transformers import SentenceTransformer

    from embedtune.models.interpolation import interpolate_weights

    runs = [("control", folder, args.control_alphas or args.alphas)]
    for entry in args.run:
        label, _, path = entry.partition("=")
        runs.append((label, Path(path), args.alphas if label in args.interpolate else "1"))
    for label, run_folder, grid in runs:
        tuned = SentenceTransformer(str(run_folder / "model"), device="cpu")
        alphas = [float(a) for a in grid.split(",")]
        for alpha in alphas:
            name = label if alpha == 1.0 else f"{label} + wise-ft α={alpha:g}"
            yield name, label, alpha, tuned if alpha == 1.0 else interpolate_weights(base, tuned, alpha)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--control-run", type=Path, help="A finished run of the default SciFact recipe to reuse")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs")
    parser.add_argument("--alphas", default="0.25,0.5,0.75,1", help="WiSE-FT α grid (comma-separated)")
    parser.add_argument("--control-alphas", help="The control's WiSE-FT grid if not --alphas ('1': none)")
    parser.add_argument(
        "--run", action="append", default=[], metavar="LABEL=RUN", help="A finished lever run on the same data"
    )
    parser.add_argument(
        "--interpolate", action="append", default=[], metavar="LABEL", help="Also score a lever run's WiSE-FT grid"
    )
    parser.add_argument("--forgetting", action="store_true", help="Also score every model out of domain")
    parser.add_argument("--ood", default=",".join(OUT_OF_DOMAIN), help="--forgetting's sets (korquad,code)")
    parser.add_argument("--out", type=Path, help="Write the figures as JSON here")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "auto"),
        help="Evaluation precision of every model (fp32; auto: eval.precision's, as the runs report, and their cache)",
    )
    args = parser.parse_args()
    if not SCIFACT.exists():
        sys.exit(f"SciFact not found at {SCIFACT}: this benchmark needs ../shared/datasets/scifact")
    if set(args.ood.split(",")) - set(OUT_OF_DOMAIN):
        sys.exit(f"--ood: choose among {', '.join(OUT_OF_DOMAIN)}")
    if args.forgetting and "korquad" in args.ood.split(",") and not KORQUAD.is_file():
        sys.exit(f"KorQuAD not found at {KORQUAD}: --forgetting needs ../shared/datasets/korquad-v1.0")

    from embedtune.cache import EmbeddingCache
    from embedtune.config import config_from_dict
    from embedtune.data.prepare import prepare_data
    from embedtune.evaluation.seen_unseen import seen_queries, training_positives
    from embedtune.models.loading import load_base_model
    from embedtune.runs import load_run

    started = time.time()
    folder = args.control_run or train_control(args.runs_dir)
    control_time = time.time() - started
    config = config_from_dict(load_run(folder).record.config)
    data = prepare_data(config.data)
    seen = seen_queries(data.report, training_positives(data.train_examples))
    test_ids = sorted(data.report.qrels)
    groups = {
        "all": test_ids,
        "seen": [q for q in test_ids if q in seen],
        "unseen": [q for q in test_ids if q not in seen],
    }
    cache = EmbeddingCache.from_settings(config.eval.cache_dir, config.eval.cache_max_gb)
    base = load_base_model(config)
    batch = config.eval.batch_size
    splits = {"dev": data.dev, "test": data.report}
    ood = [role for role in args.ood.split(",") if role] if args.forgetting else []
    if ood:
        splits.update(out_of_domain_splits(ood))
    precision = args.precision
    rows = {"base": {role: evaluate(base, split, cache, batch, precision) for role, split in splits.items()}}
    families: dict[str, dict[str, float]] = {}
    for name, family, alpha, model in candidates(args, base, folder):
        t0 = time.time()
        rows[name] = {role: evaluate(model, split, cache, batch, precision) for role, split in splits.items()}
        rows[name]["seconds"] = round(time.time() - t0, 1)
        families.setdefault(family, {})[name] = alpha
        print(
            f"{name}: dev {mean(rows[name]['dev']):.4f}, test {mean(rows[name]['test']):.4f} "
            f"({rows[name]['seconds']} s)",
            flush=True,
        )

    autos = {  # what train.interpolation=auto would pick on dev in each family: best dev, ties to the smaller α
        max(members, key=lambda name: (round(mean(rows[name]["dev"]), 6), -members[name]))
        for members in families.values()
        if len(members) > 1
    }
    base_test, control_test = rows["base"]["test"], rows["control"]["test"]
    print(f"\nSciFact, control run {folder} (trained {control_time:.0f} s here; 0 when reused)")
    print(f"groups: {', '.join(f'{g} {len(ids)}' for g, ids in groups.items())} test queries; (auto) = dev's pick")
    print(
        "| model | dev nDCG@10 | test nDCG@10 | seen Δ vs base | unseen Δ vs base | all Δ vs control "
        "| unseen Δ vs control |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, row in rows.items():
        test = row["test"]
        print(
            f"| {label}{' (auto)' if label in autos else ''} | {mean(row['dev']):.4f} | {mean(test):.4f} | "
            f"{compare(base_test, test, groups['seen'])} | {compare(base_test, test, groups['unseen'])} | "
            f"{compare(control_test, test, groups['all'])} | {compare(control_test, test, groups['unseen'])} |"
        )
    for role in ood:
        ids = sorted(splits[role].qrels)
        print(f"\nOut of domain: {splits[role].source}, {len(ids)} queries, {len(splits[role].corpus)} documents")
        print("| model | nDCG@10 | Δ vs base |")
        print("|---|---|---|")
        for label, row in rows.items():
            print(f"| {label} | {mean(row[role]):.4f} | {compare(rows['base'][role], row[role], ids)} |")
    if args.out:
        summary = {
            label: {
                "dev": mean(r["dev"]),
                **{g: mean(r["test"], ids) for g, ids in groups.items()},
                **{role: mean(r[role]) for role in OUT_OF_DOMAIN if role in r},
            }
            for label, r in rows.items()
        }
        args.out.write_text(json.dumps({"auto": sorted(autos), "rows": summary}, indent=2))


if __name__ == "__main__":
    main()
