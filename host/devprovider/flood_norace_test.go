//go:build !race

package devprovider_test

// authorizeFlood is the number of authorization requests the bound test
// sends: the 40,000 that once grew the heap by 53 MB.
const authorizeFlood = 40000
