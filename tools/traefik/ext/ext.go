// Package ext holds the two types that Traefik's dynamic configuration embeds as extension
// points (pkg/config/dynamic: HTTPConfiguration embeds ext.HTTP, Router embeds ext.Router).
// In Traefik's repository they are empty structs as well, so this adds no configuration field.
package ext

// HTTP is embedded in Traefik's dynamic.HTTPConfiguration.
type HTTP struct{}

// Router is embedded in Traefik's dynamic.Router.
type Router struct{}
