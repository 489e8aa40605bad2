# Kubilitics AI — developer entry points. Everything the targets need is built by hack/ and
# cached under ~/.cache/kubilitics-ai/ (keyed by version).
SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)

.PHONY: demo test doctor image bench bench-llm chaos accuracy controlplane cluster-up cluster-down crds lint unit fmt

## Run the demo: local control plane, operator, an AIRequest end to end.
demo:
	@hack/demo.sh

## Run every test: lint, unit, and integration tests against a real control plane.
test:
	@hack/test.sh

## List every prerequisite (found / MISSING, how to get it) and what is cached; builds nothing.
doctor:
	@hack/doctor.sh

## Container image without a registry or daemon (buildah): dist/kubilitics-ai.oci.tar, SBOM, trivy scan.
image:
	@hack/image.sh

## Benchmark: N AIRequests through a release operator process (BENCH_SIZES=100,1000,5000).
bench:
	@hack/build-controlplane.sh k8s kwok
	cargo build --release --bin kubilitics-ai
	cargo bench --bench operator

## Chaos suite, full rounds (a short version runs in make test), and longer fuzzing.
chaos:
	@hack/chaos.sh

## Planner accuracy: builtin, and the local model (built and served like in make test).
accuracy:
	@hack/accuracy.sh

## LLM cost in a populated cluster (local model): p50/p95 s, model calls, cached/new prompt tokens; writes docs/accuracy/llm-cost.md.
bench-llm:
	@hack/bench-llm.sh

## Build (or find cached) kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok, helm.
controlplane:
	@hack/build-controlplane.sh

## Start the local control plane in .cluster/ (MEMBERS=N also starts N member clusters in .cluster/members/).
cluster-up:
	@MEMBERS="$(MEMBERS)" hack/cluster-up.sh

cluster-down:
	@hack/cluster-down.sh

## Regenerate the committed CRDs from the Rust types.
crds:
	cargo run --quiet -- crd --crds-only > crds/kubilitics-ai.crds.yaml
	cp crds/kubilitics-ai.crds.yaml crds/kubilitics-ai.identity-policy.yaml charts/kubilitics-ai/crds/

fmt:
	cargo fmt --all

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
