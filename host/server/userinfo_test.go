package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/host/identity"
)

// flakyUserInfo is a user info store whose reads fail with err while it is
// set, as a database that does not answer fails them.
type flakyUserInfo struct {
	identity.UserInfoStore
	mu  sync.Mutex
	err error
}

func (s *flakyUserInfo) fail(err error) { s.mu.Lock(); s.err = err; s.mu.Unlock() }

func (s *flakyUserInfo) Get(ctx context.Context, sub string) (identity.UserInfo, error) {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return identity.UserInfo{}, err
	}
	return s.UserInfoStore.Get(ctx, sub)
}

// /v1/userinfo answers 404 only for a user whose info is not stored. A store
// that fails otherwise (a database blip) answers 503 in Backstage's error
// shape, so Backstage does not take a passing failure for a missing user,
// and the failure is logged without the caller's token.
func TestUserInfoStoreFailureIsNotNotFound(t *testing.T) {
	store := &flakyUserInfo{}
	var logMu sync.Mutex
	var logBuf bytes.Buffer
	logs := func() string { logMu.Lock(); defer logMu.Unlock(); return logBuf.String() }
	f := newFixture(t, fixtureOptions{
		UserInfo: func(s identity.UserInfoStore) identity.UserInfoStore { store.UserInfoStore = s; return store },
		Logger:   hclog.New(&hclog.LoggerOptions{Output: &logBuf, Mutex: &logMu}),
	})
	token := signIn(t, f, newBrowser(t))["backstageIdentity"].(map[string]any)["token"].(string)
	get := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, f.URL("/api/auth/v1/userinfo"), nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	if res := get(); res.StatusCode != http.StatusOK {
		t.Fatalf("userinfo: %d %s", res.StatusCode, mustRead(res))
	}

	store.fail(errors.New("postgres: reading user info for user:default/alice: connection refused"))
	res := get()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("userinfo while the store fails: %d %s, want 503", res.StatusCode, mustRead(res))
	}
	body := decodeJSON(t, res)
	if e := body["error"].(map[string]any); e["name"] != "ServiceUnavailableError" || strings.Contains(fmt.Sprint(e["message"]), "connection refused") {
		t.Errorf("error body %v: want a ServiceUnavailableError without the cause", body)
	}
	if code := body["response"].(map[string]any)["statusCode"]; code != float64(http.StatusServiceUnavailable) {
		t.Errorf("response.statusCode = %v", code)
	}
	if l := logs(); !strings.Contains(l, "connection refused") || strings.Contains(l, token) {
		t.Errorf("the failure is not logged, or the log holds the token:\n%s", l)
	}

	store.fail(fmt.Errorf("postgres: %w", identity.ErrUserInfoNotFound))
	if res := get(); res.StatusCode != http.StatusNotFound {
		t.Fatalf("userinfo of a user with none stored: %d %s, want 404", res.StatusCode, mustRead(res))
	}
}
