# The voting app. `make run` runs it; `make test` runs every test, starting what they need.
# Every tool version is pinned in tools/versions.env; the tools themselves are built into one
# cache directory (scripts/lib.sh says where) by scripts/tool, scripts/kube-tools and others.
include tools/versions.env

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/votingapp/voting/internal/buildinfo.version=$(VERSION) -X github.com/votingapp/voting/internal/buildinfo.commit=$(COMMIT)
GO      := scripts/go
GOFMT   := $(shell $(GO) env GOROOT)/bin/gofmt

# The deployment checks live in their own Go modules, so that Helm, kustomize, compose-go
# and Prometheus never enter the app's go.mod.
DEPLOY_MODULES := deploy/compose deploy/kubetest deploy/monitoring

.PHONY: run build test prebuild test-go test-deploy staticcheck-kubetest manifests e2e-apiserver e2e-compose e2e-supplychain e2e-cluster test-faults fuzz bench bench-smoke image up down seed screenshots lint vuln clean

## run: the whole app in one process on the embedded default (SQLite in ./data, in-process queue)
run:
	$(GO) run ./cmd/voting all --log-format=text

## build: the static binary in bin/voting
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/voting ./cmd/voting

## test: every check and test: lint, the Go tests on throwaway Redis and PostgreSQL and in
## headless Chromium, the deployment files, a real kube-apiserver, the compose deployment on a
## real Docker engine, the signed artifacts' verification offline, and the Helm and kustomize
## deployments on a real Kubernetes node
test: prebuild lint vuln test-go test-deploy bench-smoke e2e-apiserver e2e-compose e2e-supplychain e2e-cluster

## prebuild: start the slow tool builds of the last parts (Kubernetes, Traefik, cosign, syft) in the
## background, at the lowest priority, so that they use the CPU the tests before them leave idle
prebuild:
	scripts/prebuild

## test-go: the app's tests (Chromium, and qemu for the arm64 binary, are installed when missing
## and running as root; without them those tests fail under CI=true and are skipped otherwise)
test-go:
	scripts/need qemu-aarch64-static:qemu-user-static || true
	CHROMIUM=$$(scripts/ensure-chromium || true) scripts/with-servers $(GO) test -race -count=1 ./...

## test-deploy: compose file, Dockerfile, Kubernetes manifests, Helm chart, dashboards and alerts
test-deploy:
	scripts/with-servers sh -c 'for m in $(DEPLOY_MODULES); do echo "== $$m"; (cd $$m && ../../$(GO) vet ./... && ../../$(GO) test -count=1 ./...) || exit 1; done'

## manifests: render and validate the kustomize and Helm deployments (no cluster)
manifests:
	cd deploy/kubetest && ../../$(GO) vet ./... && ../../$(GO) test -count=1 ./...

## e2e-apiserver: every rendering applied to a real kube-apiserver (built from Go modules on first use)
e2e-apiserver:
	scripts/kube-apiserver-test

## e2e-compose: the compose deployment on a real Docker engine (started and stopped by the script)
e2e-compose:
	scripts/e2e-compose

## e2e-supplychain: offline, a registry on loopback, the image and the chart pushed, signed
## with a key made for the run, an SBOM attested; the README's verification commands pass on
## them and fail on a tampered image, an unsigned one and a chart signed by another key
e2e-supplychain:
	scripts/e2e-supplychain

## e2e-cluster: Helm and kustomize deployments on a real single-node Kubernetes built from Go
## modules (CoreDNS, kube-router policies, metrics-server, local-path volumes, Traefik Gateway),
## checked end to end; needs root (docs/kubernetes-e2e.md)
e2e-cluster:
	scripts/e2e-cluster

## image: the container image ghcr.io/votingapp/voting:dev from the Dockerfile (BuildKit)
image:
	scripts/docker-build

## up: the compose deployment (needs a running Docker engine; makes deploy/compose/.env and
## deploy/compose/voter-key when missing); down: stop it
up: image
	@test -f deploy/compose/.env || { cp deploy/compose/.env.example deploy/compose/.env; \
	  echo "up: wrote deploy/compose/.env from .env.example; set your own POSTGRES_PASSWORD there"; }
	@test -f deploy/compose/voter-key || { (umask 022; head -c 48 /dev/urandom | base64 >deploy/compose/voter-key) && \
	  echo "up: wrote a new voter key to deploy/compose/voter-key (vote's compose secret; keep it, a new key makes every voter new)"; }
	scripts/compose up -d --wait

down:
	scripts/compose --profile seed down

## seed: cast the original's 3000 votes against the compose deployment
seed:
	scripts/compose --profile seed run --rm seed

## test-faults: the fault tests alone (they start their own Redis and PostgreSQL)
test-faults:
	$(GO) test -count=1 -v ./internal/faulttest

FUZZTIME ?= 30s
## fuzz: run each fuzz target for FUZZTIME (the suite runs their seed corpora)
fuzz:
	@for t in internal/voting:FuzzDecodeMessage internal/voting:FuzzParseOptions internal/vote:FuzzFormVote internal/vote:FuzzAPIVote internal/vote:FuzzVoterCookie internal/ratelimit:FuzzClientIP internal/result:FuzzWebSocketHandshake cmd/voting:FuzzSettings; do \
	  $(GO) test -run='^$$' -fuzz="^$${t##*:}\$$" -fuzztime=$(FUZZTIME) ./$${t%%:*} || exit 1; done

## bench: every performance target next to its ceiling, on its own Redis and PostgreSQL
## (minutes; see docs/performance.md)
bench:
	scripts/bench

## bench-smoke: scripts/bench at toy sizes (about 30 s): checks that `make bench` runs, never how fast
bench-smoke:
	scripts/bench --smoke

## screenshots: refresh docs/screenshots from the browser tests
screenshots:
	CHROMIUM=$$(scripts/ensure-chromium) $(GO) test -count=1 ./internal/browsertest -update-screenshots

## lint: formatting and go.mod tidiness (every module), vet (also of the image's -tags nosqlite
## build) and staticcheck (also of the deployment modules compose and monitoring), actionlint,
## and the workflows' supply-chain rules (tools/workflows). vet builds with -race, as test-go
## does, so that the app's dependencies compile once. deploy/kubetest is vetted by test-deploy
## and staticchecked by staticcheck-kubetest, not here: staticcheck analyses every package of
## Kubernetes and Helm from source, 7 CPU-minutes of a cold make test
lint:
	@test -z "$$($(GOFMT) -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; $(GOFMT) -l $$(git ls-files '*.go'); exit 1; }
	$(GO) mod tidy -diff
	@$(GO) -C tools/traefik run ./cmd/prunelego && for m in $(DEPLOY_MODULES) tools/kube tools/metrics-server tools/compose tools/policy-controller tools/traefik tools/workflows; do [ -f $$m/go.mod ] || continue; (cd $$m && ../../$(GO) mod tidy -diff) || { echo "go mod tidy needed in $$m"; exit 1; }; done
	$(GO) vet -race ./...
	$(GO) vet -race -tags nosqlite ./cmd/voting
	@sc=$$(scripts/tool staticcheck) && $$sc ./... && \
	  for m in deploy/compose deploy/monitoring; do echo "staticcheck in $$m"; (cd $$m && $$sc ./...) || exit 1; done
	scripts/actionlint
	cd tools/workflows && ../../$(GO) test -count=1 ./...

## staticcheck-kubetest: staticcheck of deploy/kubetest, which lint leaves to vet (GitHub
## Actions runs it after make test)
staticcheck-kubetest:
	sc=$$(scripts/tool staticcheck) && cd deploy/kubetest && $$sc ./...

## vuln: govulncheck against the vulnerability database from the Go module proxy (works
## offline); fails on a called vulnerability of a third-party module, lists the standard
## library's (fixed by a newer Go, not here). The report goes through a file, not a pipe:
## sh has no pipefail, and a govulncheck that failed would leave vulngate nothing to object to.
vuln:
	@vc=$$(scripts/tool govulncheck) || exit 1; \
	db=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	test -n "$$db" || { echo "vuln: no golang.org/x/vulndb@$(VULNDB_VERSION) from the module proxy"; exit 1; }; \
	report=$$(mktemp) && trap 'rm -f "$$report"' EXIT && \
	$$vc -db file://$$db/data/osv -format json ./... >"$$report" && \
	$(GO) run ./scripts/vulngate <"$$report"

## clean: the binary; the votes of make run (./data) and the tool cache (~/.cache/voting, or
## $VOTING_CACHE) stay
clean:
	rm -rf bin
