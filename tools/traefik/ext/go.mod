// Module ext stands in for github.com/traefik/traefik/dynamic/ext, a module nested in
// Traefik's repository that its go.mod replaces with a local directory, so it is not in the
// v3 module's zip and the module proxy does not serve it. See ../go.mod.
module github.com/traefik/traefik/dynamic/ext

go 1.26.8
