// Package shiptest tests what spectroauth ships, as an operator gets it:
// the release in dist/ (checksums, static binaries of each platform, their
// stamped version, the SBOM, the same bytes built from another checkout)
// and the OCI image run by podman, signed in through from outside. make
// test-release and make test-image point it at what they built; it is its
// own module so that nothing here weighs on the daemon's build.
package shiptest
