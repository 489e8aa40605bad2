#!/usr/bin/env bash
# The LLM path's cost in a populated cluster: single-action accuracy cases through the
# operator's agent against the local model (llama.cpp + Qwen2.5-Coder-0.5B; LLM_MODEL=1.5b for
# the 1.5B one), on a local control plane with several namespaces of a dozen Deployments each.
# Prints p50/p95 seconds, model calls, cached/new prompt tokens, completion tokens and the score
# per request; writes docs/accuracy/llm-cost.md. Slow on a small CPU (prefill runs there):
# ACCURACY_BENCH_CASES=10 for a shorter run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
need_cargo
"$HACK_DIR/cluster-up.sh" || die "step 'hack/cluster-up.sh' failed"
start_llm
trap 'bash "$HACK_DIR/llm/serve.sh" stop "$LLM_PID" >/dev/null 2>&1 || true' EXIT
KUBECONFIG="$CLUSTER_DIR/kubeconfig/admin.kubeconfig" ACCURACY_BENCH=1 \
  ACCURACY_LLM_URL="http://127.0.0.1:$LLM_PORT/v1" ACCURACY_LLM_MODEL="qwen2.5-coder-${LLM_MODEL:-0.5b}" \
  cargo run --quiet --example accuracy
