#!/usr/bin/env bash
# Planner accuracy benchmark: the builtin parser, then the local model (llama.cpp +
# Qwen2.5-Coder-0.5B; LLM_MODEL=1.5b for the 1.5B alternative).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
need_cargo
start_llm
trap 'bash "$HACK_DIR/llm/serve.sh" stop "$LLM_PID" >/dev/null 2>&1 || true' EXIT
ACCURACY_LLM_URL="http://127.0.0.1:$LLM_PORT/v1" ACCURACY_LLM_MODEL="qwen2.5-coder-${LLM_MODEL:-0.5b}" cargo run --quiet --example accuracy
# The diagnostician, builtin and the same local model: docs/accuracy/diagnosis.md.
DIAGNOSIS_LLM_URL="http://127.0.0.1:$LLM_PORT/v1" DIAGNOSIS_LLM_MODEL="qwen2.5-coder-${LLM_MODEL:-0.5b}" cargo run --quiet --example diagnosis
