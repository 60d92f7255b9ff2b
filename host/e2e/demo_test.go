package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDemoPage is the promise of `make run`: on its embedded defaults the
// daemon serves a page where one clicks "Sign in with SpectroCloud", picks a
// user on the development provider's login page, and sees the profile, the
// Backstage identity and the ID token claims, in a real browser.
func TestDemoPage(t *testing.T) {
	p := locate(t)
	node := needNode(t, p)
	chrome := needChromium(t)
	art := artifactDir(t, p)
	port := strconv.Itoa(freePort(t))
	base := "http://localhost:" + port
	// No -config: the embedded defaults, moved to a free port and a
	// temporary data directory through environment overrides.
	d := startProcess(t, "spectroauthd", filepath.Join(art, "demo-daemon.log"), t.TempDir(), []string{
		"SPECTROAUTH_SERVER__LISTEN=127.0.0.1:" + port,
		"SPECTROAUTH_SERVER__BASEURL=" + base,
		"SPECTROAUTH_APP__BASEURL=" + base,
		"SPECTROAUTH_AUTH__PROVIDERS__SPECTROCLOUD__DEVELOPMENT__ISSUER=" + base + "/dev/oidc",
		"SPECTROAUTH_STORAGE__PATH=" + t.TempDir(),
	}, daemonBinary(t, p), "-log-format", "text")
	if err := waitHTTP(d, base+"/readyz", 20*time.Second); err != nil {
		t.Fatalf("daemon not ready: %v\n%s", err, d.tail())
	}

	ctx := exec.Command(node, "demo.mjs", chrome, base, art)
	ctx.Dir = p.node
	ctx.Stderr = os.Stderr
	setProcessGroup(ctx)
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = ctx.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(90 * time.Second):
		killGroup(ctx)
		<-done
		t.Fatal("demo.mjs did not finish within 90s")
	}
	if err != nil {
		t.Fatalf("clicking through the demo page failed: %v (screenshots in %s)\n%s", err, art, d.tail())
	}
	var shown struct {
		DisplayName, Email, AfterReload string
		Identity                        map[string]any
		IDClaims                        map[string]any `json:"idClaims"`
		SignedOut                       bool
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &shown); err != nil {
		t.Fatalf("demo.mjs printed %q: %v", out, err)
	}
	if shown.DisplayName != "Alice Example" || shown.Email != "alice@example.com" || shown.AfterReload != "Alice Example" || !shown.SignedOut {
		t.Errorf("the page showed %+v", shown)
	}
	if shown.Identity["userEntityRef"] != "user:default/alice" || shown.IDClaims["iss"] != base+"/dev/oidc" {
		t.Errorf("identity %v, ID token claims %v", shown.Identity, shown.IDClaims)
	}
}
