#!/usr/bin/env bash
# Install the Python docs corpus if needed, index it into its own data dir, and run the eval.
# Usage: bench/pydocs/run_eval.sh [DATA_DIR] [extra `lore eval` args, e.g. --json]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
data_dir="${1:-${TMPDIR:-/tmp}/lore-pydocs}"
shift || true
bash "$here/install_corpus.sh" >/dev/null
export LORE_CONFIG="$here/lore.toml" LORE_DATA_DIR="$data_dir"
export LORE_LLM__PROVIDER="${LORE_LLM__PROVIDER:-extractive}"
"$repo/.venv/bin/lore" index >&2
"$repo/.venv/bin/lore" eval "$here/questions.jsonl" "$@"
