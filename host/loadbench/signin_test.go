package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
	"time"
)

func TestMedianRange(t *testing.T) {
	tests := []struct {
		name        string
		v           []float64
		med, lo, hi float64
	}{
		{"one", []float64{2}, 2, 2, 2},
		{"odd", []float64{3, 1, 2}, 2, 1, 3},
		{"even: mean of the middle two", []float64{4, 1, 2, 3}, 2.5, 1, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			med, lo, hi := medianRange(tc.v)
			if med != tc.med || lo != tc.lo || hi != tc.hi {
				t.Errorf("medianRange(%v) = %v, %v, %v; want %v, %v, %v", tc.v, med, lo, hi, tc.med, tc.lo, tc.hi)
			}
		})
	}
}

// What the plugin calls add pairs the blocks measured side by side, so a
// drift of the machine over the run cancels out.
func TestPluginCallsAdd(t *testing.T) {
	chain := SignInResult{Blocks: []float64{3.0, 2.6, 2.5}}
	builtin := SignInResult{Blocks: []float64{2.0, 1.5, 1.6}}
	med, lo, hi := pluginCallsAdd(chain, builtin)
	if !near(med, 1.0) || !near(lo, 0.9) || !near(hi, 1.1) {
		t.Errorf("pluginCallsAdd = %v, %v, %v; want 1.0, 0.9, 1.1", med, lo, hi)
	}
	if med, _, _ := pluginCallsAdd(chain, SignInResult{}); med != 0 {
		t.Errorf("without built-in blocks: %v, want 0", med)
	}
}

func TestSummarize(t *testing.T) {
	r := SignInResult{BlockSignIns: 200, Blocks: []float64{2.2, 2.0, 2.6}, wall: []float64{7, 6, 9}}
	r.summarize()
	if r.SignIns != 600 || r.CPUMillisPerOne != 2.2 || r.CPUMillisMin != 2.0 || r.CPUMillisMax != 2.6 || r.WallMillisPerOne != 7 {
		t.Errorf("summarize: %+v", r)
	}
}

func TestFilesystemOf(t *testing.T) {
	if got := filesystemOf("/proc/self"); got != "proc" && got != "?" {
		t.Errorf("filesystemOf(/proc/self) = %q, want proc", got)
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

// A block runs exactly n sign-ins, at most concurrency at a time, and stops
// at the first failure.
func TestSignInBlockConcurrency(t *testing.T) {
	for _, tc := range []struct{ n, concurrency, wantMax int }{{10, 1, 1}, {40, 4, 4}, {3, 8, 3}} {
		var inFlight, maxInFlight, total atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cur := inFlight.Add(1)
			defer inFlight.Add(-1)
			for m := maxInFlight.Load(); cur > m && !maxInFlight.CompareAndSwap(m, cur); m = maxInFlight.Load() {
			}
			total.Add(1)
			time.Sleep(2 * time.Millisecond) // let the others pile up
			http.SetCookie(w, &http.Cookie{Name: "spectrocloud-refresh-token", Value: "x", Path: "/"})
			fmt.Fprint(w, "backstageIdentity")
		}))
		if _, _, err := signInBlock(srv.URL, os.Getpid(), tc.n, tc.concurrency); err != nil {
			t.Fatalf("n=%d concurrency=%d: %v", tc.n, tc.concurrency, err)
		}
		srv.Close()
		if total.Load() != int64(tc.n) || maxInFlight.Load() > int64(tc.wantMax) || tc.concurrency > 1 && maxInFlight.Load() < 2 {
			t.Errorf("n=%d concurrency=%d: %d sign-ins, at most %d at once; want %d, at most %d", tc.n, tc.concurrency, total.Load(), maxInFlight.Load(), tc.n, tc.wantMax)
		}
	}
	var total atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		total.Add(1)
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer srv.Close()
	if _, _, err := signInBlock(srv.URL, os.Getpid(), 100, 4); err == nil || total.Load() > 8 {
		t.Errorf("failing sign-ins: error %v after %d sign-ins; want an error after at most 8", err, total.Load())
	}
}
