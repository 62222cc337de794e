# gantry: developer and CI entry points. `make ci` runs exactly what CI runs.

CARGO ?= cargo

.PHONY: all build build-release demo package publish deploy release approve rollback status test lint lint-workflows fmt ci bench bench-memory bench-image bench-publish bench-publish-memory bench-deploy bench-demo schema install clean

all: build

build:
	$(CARGO) build --locked

build-release:
	$(CARGO) build --locked --release

# Deploys the example app in examples/hello to the local target (nginx + replicas): v1, then
# v2 blue-green under load from hey, then a broken v3 that is rolled back by itself.
# Installs what it needs on a fresh machine; works on a temp copy and stops what it started.
demo:
	scripts/demo.sh

# The example project's flow with the gantry built here (examples/hello/Makefile):
#   make package | publish ENV=dev | deploy ENV=dev | release BUMP=minor | approve ENV=prd
#   | rollback ENV=dev | status ENV=dev
# `deploy` is the dev deploy: package the working tree and deploy it directly, no pipeline.
ENV ?= dev
BUMP ?= auto
HELLO = $(MAKE) -C examples/hello ENV=$(ENV) BUMP=$(BUMP) GANTRY=$(abspath $(or $(CARGO_TARGET_DIR),target))/debug/gantry
package publish deploy release approve rollback status: build
	$(HELLO) $@

# Every test: unit tests and the integration tests in tests/it.
test:
	scripts/bootstrap
	$(CARGO) test --locked --all-targets

lint: lint-workflows
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	$(CARGO) clippy --locked --no-default-features --all-targets -- -D warnings

# actionlint on every workflow (.github/workflows, workflows/) and the check of action.yml.
lint-workflows:
	scripts/lint-workflows

fmt:
	$(CARGO) fmt

ci: lint test

# Benchmarks (figures go to docs/benchmarks.md): gantry against Info-ZIP, side by side.
bench: build-release
	python3 scripts/bench_package.py speed --markdown docs/benchmarks.md

bench-memory: build-release
	python3 scripts/bench_package.py memory --markdown docs/benchmarks.md

# `gantry image push` against `skopeo copy` from the same OCI layout to the same local registry
# (scripts/test-services starts it, and moto for the ECR token), then unchanged re-pushes.
bench-image: build-release
	python3 scripts/bench_image.py --markdown docs/benchmarks.md

# `gantry publish` against `aws s3 cp` of a 1 GiB artifact to s3s-fs on loopback, then an
# unchanged re-publish; and gantry's peak memory publishing 5 GiB.
bench-publish: build-release
	python3 scripts/bench_publish.py speed --markdown docs/benchmarks.md

bench-publish-memory: build-release
	python3 scripts/bench_publish.py memory --markdown docs/benchmarks.md

# Under steady load from hey through nginx: rolling, blue-green and canary deploys of a good
# release, rollback time of a release whose health fails, failed requests during a failing
# canary, and the engine's overhead on a 4-replica blue-green.
bench-deploy: build-release
	python3 scripts/bench_deploy.py --markdown docs/benchmarks.md

# `make demo` as a fresh machine runs it: empty cargo home and target folder, timed end to end
# (3 runs), next to one first build of the full gantry. Needs a quiet machine.
bench-demo:
	python3 scripts/bench_demo.py --full-build --markdown docs/benchmarks.md

# Regenerates schema/gantry.schema.json from the config types.
schema:
	GANTRY_UPDATE_SCHEMA=1 $(CARGO) test --locked --test it config::schema

install:
	$(CARGO) install --locked --path .

clean:
	$(CARGO) clean
	rm -rf examples/hello/dist examples/hello/dist-again bench-out
