#!/usr/bin/env bash
# Planner accuracy benchmark: the builtin parser, then the local model (llama.cpp +
# Qwen2.5-Coder-0.5B; LLM_MODEL=1.5b for the 1.5B alternative).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
export LLM_CACHE="$CACHE_DIR/llm-x86-64-v3"
export LLM_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
bash "$HACK_DIR/llm/install.sh" || die "step 'hack/llm/install.sh' failed"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
PID=$(PORT=$PORT bash "$HACK_DIR/llm/serve.sh") || die "step 'hack/llm/serve.sh' failed"
trap 'bash "$HACK_DIR/llm/serve.sh" stop "$PID" >/dev/null 2>&1 || true' EXIT
ACCURACY_LLM_URL="http://127.0.0.1:$PORT/v1" ACCURACY_LLM_MODEL="qwen2.5-coder-${LLM_MODEL:-0.5b}" cargo run --quiet --example accuracy
