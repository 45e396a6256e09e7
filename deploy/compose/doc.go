// Package compose holds the checks of the container packaging: the Docker Compose deployment
// (compose.yaml, loaded with compose-go, the library Docker Compose itself uses) and the root
// Dockerfile (parsed and linted with BuildKit's own frontend code, which is what
// `docker build --check` runs). It is a module of its own so that these heavy dependencies stay
// out of the application's go.mod. Nothing here needs a Docker engine; scripts/e2e-compose runs
// the same files on a real one.
package compose
