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

# A static, cgo-free binary: the SQLite store is pure Go, so nothing needs libc, and the
# runtime image can be distroless static. -trimpath and -s -w keep paths and symbols out.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath \
      -ldflags "-s -w -X github.com/votingapp/voting/internal/buildinfo.version=$VERSION -X github.com/votingapp/voting/internal/buildinfo.commit=$COMMIT" \
      -o /out/voting ./cmd/voting \
 && mkdir -p /out/data

# distroless static, nonroot variant: CA certificates, /etc/passwd with uid 65532, /tmp, and
# no shell or package manager. The image itself is non-root, so even a plain `docker run`
# (no securityContext, no compose user:) does not run as root.
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=dev
ARG COMMIT=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="voting" \
      org.opencontainers.image.description="Example voting app: vote, worker and result in one Go binary" \
      org.opencontainers.image.source="https://github.com/votingapp/voting" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$COMMIT" \
      org.opencontainers.image.created="$CREATED"

COPY --from=build /out/voting /voting
# An empty /data owned by the runtime user: `voting all` keeps its SQLite file there, and a
# fresh named volume mounted on it takes this ownership, so the non-root process can write it.
COPY --from=build --chown=65532:65532 /out/data /data

USER 65532:65532

# vote, result, admin (/livez, /readyz, /metrics).
EXPOSE 8080 8081 9090

# Distroless has no curl: the binary probes its own admin port. Every mode listens on 9090
# for /readyz, which fails while a dependency is down or while shutting down.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["/voting", "healthcheck", "http://127.0.0.1:9090/readyz"]

ENTRYPOINT ["/voting"]
# The default is the one-process mode on the embedded SQLite store. It needs a writable data
# directory: mount one, e.g. `docker run --read-only -v voting-data:/data -p 8080:8080 -p
# 8081:8081 ghcr.io/votingapp/voting:dev`, or leave --read-only out and let it write to the
# container's own /data. Compose overrides the command per service and needs no data directory.
CMD ["all", "--data-dir=/data"]
