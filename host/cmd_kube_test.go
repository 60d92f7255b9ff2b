package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestKubeSubcommandsDispatch(t *testing.T) {
	for _, tc := range []struct {
		args []string
		err  string
	}{
		{[]string{"kube-credential", "--cluster", "prod"}, "kube-credential: --server is required"},
		{[]string{"kubeconfig", "--server", "https://auth.example.com"}, "kubeconfig: --cluster is required"},
		{[]string{"login"}, "login: --server is required"},
		{[]string{"logout", "--server", "http://auth.example.com"}, "logout: --server \"http://auth.example.com\": tokens never travel over plain http"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tc.args, &stdout, &stderr); code != 1 || stdout.Len() != 0 || !strings.Contains(stderr.String(), tc.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", tc.args, code, stdout.String(), stderr.String())
		}
	}
	var stdout bytes.Buffer
	run([]string{"help"}, &stdout, &bytes.Buffer{})
	for _, cmd := range []string{"kube-credential", "kubeconfig", "login", "logout"} {
		if !strings.Contains(stdout.String(), "spectroauthd "+cmd) {
			t.Errorf("usage does not mention %s", cmd)
		}
	}
}
