# check=error=true
# The one image of the voting app: every service (vote, worker, result, all, migrate) runs from
# it with a different command. Build it with BuildKit:
#
#   docker build -t ghcr.io/votingapp/voting:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 .   (cross-compiled, no emulation)
#
# There is deliberately no "# syntax=" line: the Dockerfile frontend built into the engine
# understands everything used here, and naming a frontend image would make the build pull it.
# "check=error=true" (first line) makes a build that runs BuildKit's checks fail on any finding.

# The builder runs on the build machine's own platform and cross-compiles for the target one,
# so a multi-platform build never runs Go under emulation. Patch-pinned to the Go version in
# go.mod; pin a digest too when publishing from CI.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build

WORKDIR /src

# Modules first, source second: a change to the code keeps the module layer cached. GOPROXY
# can be passed in (--build-arg GOPROXY=...) for builds behind a module mirror.
ARG GOPROXY
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY cmd ./cmd
COPY internal ./internal

# TARGETOS and TARGETARCH come from BuildKit (--platform); VERSION and COMMIT from the caller.
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
ARG COMMIT=unknown

# A static, cgo-free binary, so the runtime image needs no libc. -trimpath and -s -w keep paths
# and symbols out. -tags nosqlite leaves out the embedded SQLite store, 4 MB of the binary: in
# a container every service runs on Redis and PostgreSQL, and the image stays under 20 MB
# (`voting all` without --postgres-url says so in this image; `make run` has SQLite).
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -tags nosqlite \
      -ldflags "-s -w -X github.com/votingapp/voting/internal/buildinfo.version=$VERSION -X github.com/votingapp/voting/internal/buildinfo.commit=$COMMIT" \
      -o /out/voting ./cmd/voting

# The runtime image holds the binary and the CA certificates (for TLS to managed Redis and
# PostgreSQL), nothing else: no shell, no package manager, no libc. The image itself is
# non-root, so even a plain `docker run` (no securityContext, no compose user:) does not run
# as root; a numeric user needs no /etc/passwd.
FROM scratch

ARG VERSION=dev
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="voting" \
      org.opencontainers.image.description="Example voting app: vote, worker and result in one Go binary" \
      org.opencontainers.image.source="https://github.com/votingapp/voting" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$COMMIT" \
      org.opencontainers.image.created="$CREATED"

COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/voting /voting

USER 65532:65532

# vote, result, admin (/livez, /readyz, /metrics).
EXPOSE 8080 8081 9090

# The image has no curl: the binary probes its own admin port. Every mode listens on 9090 for
# /readyz, which fails while a dependency is down or while shutting down.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/voting", "healthcheck", "http://127.0.0.1:9090/readyz"]

ENTRYPOINT ["/voting"]
# Compose and Kubernetes give each service its command (vote, worker, result, migrate); on its
# own the image lists them.
CMD ["help"]
