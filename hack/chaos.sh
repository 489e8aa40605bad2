#!/usr/bin/env bash
# The full chaos suite (tests/chaos.rs with CHAOS_FULL=1: 50 kill -9 rounds, 10 leader kills,
# 3 kube-apiserver + etcd restarts, 40 requests against a faulty model, 207 hostile manifests,
# the mutation self-check) on its own fresh control plane; then the mutation check (the kill -9
# scenario must fail when the executor re-runs a step left Running instead of verifying it);
# then the fuzz targets with many more cases.
# Bounded and loopback-only; prints one [chaos] line per scenario. CHAOS_SEED=N replays a run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT_DIR"
need_cargo
export KUBILITICS_CLUSTER_DIR="$ROOT_DIR/.cluster-chaos"
trap '"$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true' EXIT
"$HACK_DIR/cluster-down.sh" >/dev/null 2>&1 || true
"$HACK_DIR/cluster-up.sh"
export KUBILITICS_TEST_CLUSTER="$KUBILITICS_CLUSTER_DIR"
log "chaos scenarios, full rounds (step 'cargo test --test chaos')"
CHAOS_FULL=1 cargo test --test chaos -- --nocapture 2>&1 | grep --line-buffered -A 4 -E '^\[chaos\]|^test |panicked|test result' \
  ; [ "${PIPESTATUS[0]}" = 0 ] || die "step 'chaos' failed"
log "mutation check: with the executor's Running check off, the kill -9 scenario must fail on a double execution (step 'mutation')"
if out="$(KUBILITICS_AI_SKIP_RUNNING_CHECK=1 cargo test --test chaos kill_9_during_planning_and_execution -- --nocapture 2>&1)"; then
  die "step 'mutation': the kill -9 scenario passed with KUBILITICS_AI_SKIP_RUNNING_CHECK=1: the chaos suite cannot catch a re-run step"
fi
grep -m 3 "approved step executed" <<<"$out" \
  || { echo "$out" | tail -40; die "step 'mutation': the scenario failed, but not on a double execution"; }
log "fuzz targets: intent parser and plan-id canonicalisation, 20000 cases each (step 'proptest')"
PROPTEST_CASES=20000 cargo test --lib fuzz_ 2>&1 | grep -E '^test |test result' \
  ; [ "${PIPESTATUS[0]}" = 0 ] || die "step 'fuzz' failed"
