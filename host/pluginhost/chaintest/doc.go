// Package chaintest holds no code: its test builds the backstage-catalog and
// claims plugins (plugins/) into binaries and runs them the way the daemon
// does, through host/pluginhost and a host/signin chain of two resolvers, the
// first of which answers "not found" so that the second signs the user in.
// It lives under host/ because it tests the plugins from the daemon's side;
// plugins themselves import only sdk/.
package chaintest
