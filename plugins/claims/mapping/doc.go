// Package mapping is the logic of the claims plugin: named mappings, each a
// few CEL expressions over the signed-in user's claims and profile, that
// compute a Backstage user entity ref and ownership refs, with an optional
// match (does the mapping apply?) and policy (may this user sign in?), and
// examples that are checked when the plugin is configured.
//
// Expressions are compiled once, at Configure, in an environment with the
// variables claims (map) and profile (map), CEL's standard library, the
// strings and lists extensions and optional values. Each evaluation is
// bounded by a cost limit and a timeout. Refs that are not valid Backstage
// entity refs, or a user ref of another kind than user, are refused. See the
// plugin's README.md for the configuration.
package mapping
