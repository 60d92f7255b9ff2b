package kubecli

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
)

// Calls to the daemon carry the session handle: a redirect must not carry
// it anywhere else, whether the client is the default one or injected.
func TestDaemonCallsFollowNoRedirect(t *testing.T) {
	var leaked atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { leaked.Add(1) }))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()

	for name, c := range map[string]*Client{"default": {}, "injected": {HTTP: &http.Client{}}} {
		res, err := c.http().PostForm(redirector.URL+"/api/auth/spectrocloud/cli/token", url.Values{"refresh_token": {"handle"}})
		if err == nil {
			res.Body.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "refusing to follow") {
			t.Errorf("%s client: err = %v, want a refused redirect", name, err)
		}
	}
	if n := leaked.Load(); n != 0 {
		t.Fatalf("the redirect was followed %d times", n)
	}
}
