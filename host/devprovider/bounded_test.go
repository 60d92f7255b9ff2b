package devprovider_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"testing"

	"golang.org/x/oauth2"

	"github.com/spectroauth/spectroauth/host/devprovider"
)

// 40,000 authorization requests (4,000 under the race detector) (each one held for a login, or auto-approved
// and holding a code) leave the provider's memory bounded: past
// MaxAuthRequests it drops expired requests and refuses new ones.
func TestAuthorizationRequestsStayBounded(t *testing.T) {
	e := newEnv(t, "", false)
	cfg := e.oauth2Config()
	target := cfg.AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	refused := 0
	for range authorizeFlood {
		w := httptest.NewRecorder()
		e.op.ServeHTTP(w, httptest.NewRequest(http.MethodGet, target, nil))
		if loc := w.Header().Get("Location"); w.Code != http.StatusFound || loc == "" {
			t.Fatalf("authorize: %d", w.Code)
		} else if u, err := url.Parse(loc); err != nil {
			t.Fatal(err)
		} else if u.Query().Get("error") != "" {
			refused++
		}
	}
	grown := int64(heap()) - int64(before)
	if grown > 16<<20 {
		t.Errorf("%d authorization requests grew the heap by %d MB", authorizeFlood, grown>>20)
	}
	if want := authorizeFlood - devprovider.MaxAuthRequests; refused < want {
		t.Errorf("refused %d requests past the bound, want at least %d", refused, want)
	}
}
