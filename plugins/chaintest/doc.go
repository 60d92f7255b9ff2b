// Package chaintest holds no code: its test builds the backstage-catalog and
// claims plugins into binaries and runs them the way the daemon does,
// through host/pluginhost and a host/signin chain of two resolvers, the
// first of which answers "not found" so that the second signs the user in.
//
// It is the one place under plugins/ that imports host/: it tests the
// plugins from the daemon's side. Plugin code itself imports only sdk/.
package chaintest
