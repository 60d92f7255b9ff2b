package kubecli_test

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spectroauth/spectroauth/host/kube/internal/kubetest"
	"github.com/spectroauth/spectroauth/host/kube/kubecli"
)

var devicePrompt = regexp.MustCompile(`open\s+(\S+/cli/device)\s+and enter the code\s+([BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4})`)

// userAtAnotherBrowser waits for the command's device prompt on stderr and
// does what the user does with it in some browser.
func userAtAnotherBrowser(t *testing.T, d *kubetest.Daemon, stderr *kubetest.SyncBuffer) <-chan string {
	done := make(chan string, 1)
	go func() {
		defer close(done)
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if m := devicePrompt.FindStringSubmatch(stderr.String()); m != nil {
				page, err := d.EnterDeviceCode(m[1], m[2])
				if err != nil {
					t.Errorf("user: %v", err)
				}
				done <- page
				return
			}
		}
		t.Errorf("the command printed no device prompt:\n%s", stderr.String())
	}()
	return done
}

// kube-credential without a local browser (over SSH) signs in with the
// device grant, headlessly: the "user" reads the URL and code from stderr
// and enters them in another browser; kubectl gets its credential.
func TestKubeCredentialDeviceSignIn(t *testing.T) {
	e := setup(t)
	stderr := &kubetest.SyncBuffer{}
	var stdout strings.Builder
	o := kubecli.IO{
		Stdout: &stdout, Stderr: stderr,
		Getenv: func(k string) string {
			if k == "SSH_CONNECTION" {
				return "198.51.100.1 50000 198.51.100.2 22"
			}
			return ""
		},
		IsTerminal:   func() bool { return true },
		Executable:   func() (string, error) { return "/usr/local/bin/spectroauthd", nil },
		LoginTimeout: 20 * time.Second,
	}
	user := userAtAnotherBrowser(t, e.d, stderr)
	code := kubecli.KubeCredential(context.Background(), []string{"--server", e.d.URL, "--cache-dir", e.cache, "--cluster", "prod"}, o)
	if code != 0 {
		t.Fatalf("kube-credential exited %d:\n%s", code, stderr.String())
	}
	if page := <-user; !strings.Contains(page, "signed in as user:default/alice") {
		t.Errorf("the browser ended at: %s", page)
	}
	var ec struct {
		Status struct {
			Token string `json:"token"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(stdout.String()), &ec); err != nil || ec.Status.Token == "" {
		t.Fatalf("ExecCredential = %q, %v", stdout.String(), err)
	}
	if strings.Contains(stderr.String(), "Opening your browser") {
		t.Errorf("the command tried a local browser:\n%s", stderr.String())
	}

	// login --device does the same, and kube-credential then signs in no more.
	stderr2 := &kubetest.SyncBuffer{}
	o.Stderr = stderr2
	user = userAtAnotherBrowser(t, e.d, stderr2)
	if code := kubecli.Login(context.Background(), []string{"--server", e.d.URL, "--cache-dir", e.cache, "--device"}, o); code != 0 {
		t.Fatalf("login --device exited %d:\n%s", code, stderr2.String())
	}
	<-user
	if !strings.Contains(stderr2.String(), "Signed in to "+e.d.URL+" as user:default/alice") {
		t.Errorf("login --device:\n%s", stderr2.String())
	}
}
