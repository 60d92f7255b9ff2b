package server_test

import (
	"net/url"
	"slices"
	"sync"
	"testing"

	"github.com/spectroauth/spectroauth/host/server"
)

// Each sign-in that reaches the callback reports its outcome once: a
// success, the provider's refusal, and a forged code the provider refuses.
func TestSignInOutcomesAreReported(t *testing.T) {
	var mu sync.Mutex
	var got []string
	f := newFixture(t, fixtureOptions{SignInDone: func(env, client, outcome string) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, env+"/"+client+"/"+outcome)
	}})
	signIn(t, f, newBrowser(t))
	for _, edit := range []func(q url.Values){
		func(q url.Values) { q.Del("code"); q.Set("error", "access_denied") },
		func(q url.Values) { q.Set("code", "forged") },
	} {
		b := newBrowser(t)
		cb, _ := url.Parse(authorize(t, f, b, popupQuery()))
		q := cb.Query()
		edit(q)
		cb.RawQuery = q.Encode()
		b.Get(cb.String()).Body.Close()
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"development/browser/" + server.SignInSucceeded, "development/browser/" + server.SignInRefused, "development/browser/" + server.SignInRefused}
	if !slices.Equal(got, want) {
		t.Errorf("outcomes = %v, want %v", got, want)
	}
}
