package daemon

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
)

// TestPaletteAPIMounted wires paletteApi: the route is there, refuses a
// caller without a credential, and tells a command-line user whose
// sign-in brought no Palette session token (the development provider hands
// none out) so with a 503, calling no one.
func TestPaletteAPIMounted(t *testing.T) {
	_, base, err := startDevWith(t, func(cfg *config.Config) {
		cfg.PaletteAPI = config.PaletteAPI{Enabled: true, Allow: []string{"POST /v1/dashboard/spectroclusters/search"}}
	})
	if err != nil {
		t.Fatal(err)
	}
	call := func(token string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+"/api/auth/spectrocloud/palette/v1/dashboard/projects/metadata", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if status, body := call(""); status != http.StatusUnauthorized {
		t.Errorf("no credential: %d %s", status, body)
	}

	cache := t.TempDir()
	cli := &kubecli.Client{Server: base, CacheDir: cache, Interactive: true, OpenBrowser: devLogin(t, base), LoginTimeout: 30 * time.Second}
	if _, err := cli.Login(context.Background()); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(cache, "sessions", "*.json"))
	if len(files) != 1 {
		t.Fatalf("command-line sessions: %v", files)
	}
	var s struct {
		AccessToken string `json:"accessToken"`
	}
	raw, _ := os.ReadFile(files[0])
	if err := json.Unmarshal(raw, &s); err != nil || s.AccessToken == "" {
		t.Fatalf("no access token in the command line's session: %v", err)
	}
	if status, body := call(s.AccessToken); status != http.StatusServiceUnavailable || !strings.Contains(body, "no Palette session token") {
		t.Errorf("signed in without a Palette token: %d %s", status, body)
	}
}
