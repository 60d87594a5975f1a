#!/usr/bin/env bash
# One prepared call on a lent GPU machine (docs/development.md, "On a lent GPU"). Built here with
#   .venv/bin/python tools/device_pack.py --korquad
# then, in the device tool's run, with carry [.device-pack] and from the project root:
#   source .device-pack/env.sh && bash tools/gpu_check.sh tests      # the test suite on CUDA (about 4 min)
#   source .device-pack/env.sh && bash tools/gpu_check.sh bench      # bench/gpu.py's default parts (about 8 min)
#   source .device-pack/env.sh && bash tools/gpu_check.sh bench --only compile
# Logs and results go to $OUT (the folder that comes back), or /tmp/gpu-check elsewhere.
set -uo pipefail
out=${OUT:-/tmp/gpu-check}
mkdir -p "$out"
part=${1:?usage: gpu_check.sh tests|bench [bench/gpu.py options]}
shift
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
python3 -m embedtune doctor > "$out/doctor.txt" 2>&1
cat "$out/doctor.txt"

# Left out on the device: what tools/device_pack.py does not carry, none of it CUDA-specific.
left_out=(
  -m "not lock"                          # the image's packages are not the lock's
  --ignore tests/test_docs.py            # mkdocs (the documentation site)
  --ignore tests/test_code_rules.py      # ruff (lint and format)
  --ignore tests/training/test_mlflow_report.py  # mlflow-skinny
  # faiss-cpu (search indexes, the server over one, faiss mining); its CPU code is the same with or without a GPU
  --ignore tests/search/test_index.py --ignore tests/search/test_retriever.py --ignore tests/search/test_top_k.py
  --ignore tests/serving/test_serve.py
  --deselect tests/export/test_onnx.py::test_index_build_search_and_eval_with_the_export
  --deselect tests/mining/test_mining.py::test_chunking_and_faiss_search_give_the_same_negatives
)
case $part in
  tests)
    # Parallel workers share the one GPU; --durations names the slowest tests, -x is not used so that one
    # failure does not hide the others. Stopped after TESTS_TIMEOUT seconds so that the call keeps its output.
    # EMBEDTUNE_CUDA_MEMORY_REPORT (tests/conftest.py): each test's peak GPU memory, the largest printed below.
    memory=/tmp/gpu-check-memory
    rm -rf "$memory" && mkdir -p "$memory"
    EMBEDTUNE_CUDA_MEMORY_REPORT=$memory timeout "${TESTS_TIMEOUT:-420}" python3 -m pytest -p no:cacheprovider -q \
      -n "${WORKERS:-8}" "${left_out[@]}" --durations 15 --junitxml "$out/tests.xml" "$@" > "$out/tests.log" 2>&1
    status=$?
    cat "$memory"/*.tsv 2>/dev/null | sort -t $'\t' -k2,2nr > "$out/cuda-peak.tsv"
    echo "largest peak GPU memory per test (allocated / reserved MiB):"
    head -12 "$out/cuda-peak.tsv" | awk -F '\t' '{printf "%8.0f %8.0f  %s\n", $1 / 1048576, $2 / 1048576, $3}'
    grep -E "^(FAILED|ERROR)|passed|failed|slowest|^[0-9.]+s (call|setup)" "$out/tests.log" | tail -60
    exit $status
    ;;
  bench)
    python3 bench/gpu.py --record-to "$out/gpu-rows.md" "$@" 2>&1 | tee "$out/bench.log" | grep --line-buffered -E "^\[|rows added|total|failed|Error"
    exit "${PIPESTATUS[0]}"
    ;;
  *)
    echo "unknown part $part: tests or bench" >&2
    exit 2
    ;;
esac
