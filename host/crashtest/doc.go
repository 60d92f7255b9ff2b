// Package crashtest holds the crash-consistency test of the daemon's file
// storage: the real spectroauthd binary is SIGKILLed in a loop while it
// writes sessions, and every restart must find the store readable, every
// session a client was told about, and no half-written file. The package
// has no code of its own; see crash_test.go.
package crashtest
