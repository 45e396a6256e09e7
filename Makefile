# The voting app. `make run` runs it; `make test` runs every test, starting what they need.
# Tool versions are pinned here, in one place.
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
VULNDB_VERSION      := v0.0.0-20261105234957-e22db6528018

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/votingapp/voting/internal/buildinfo.version=$(VERSION) -X github.com/votingapp/voting/internal/buildinfo.commit=$(COMMIT)
TOOLS   := $(CURDIR)/.cache/bin
GO      := scripts/go

.PHONY: run build test test-go lint vuln clean

## run: the whole app in one process on the embedded default (SQLite in ./data, in-process queue)
run:
	$(GO) run ./cmd/voting all --log-format=text

## build: the static binary in bin/voting
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/voting ./cmd/voting

## test: every check and test, with throwaway Redis and PostgreSQL on loopback
test: lint test-go

test-go:
	scripts/with-servers $(GO) test -race -count=1 ./...

## lint: formatting, go.mod tidiness, vet and staticcheck
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) mod tidy -diff
	$(GO) vet ./...
	@test -x $(TOOLS)/staticcheck || GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck ./...

## vuln: govulncheck against the vulnerability database from the Go module proxy (works offline)
vuln:
	@test -x $(TOOLS)/govulncheck || GOBIN=$(TOOLS) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	@db=$$($(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'); \
	$(TOOLS)/govulncheck -db file://$$db/data/osv ./...

clean:
	rm -rf bin .cache
