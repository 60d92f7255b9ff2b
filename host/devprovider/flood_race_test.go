//go:build race

package devprovider_test

// authorizeFlood is smaller under the race detector, which slows each
// request tenfold; it still passes MaxAuthRequests fourfold.
const authorizeFlood = 4000
