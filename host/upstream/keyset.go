package upstream

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
)

// fetchAwareKeySet tells, through the context, when verifying a signature
// failed because the provider's keys could not be fetched rather than
// because the signature is bad. go-oidc flattens both into one error string,
// and the difference matters: a JWKS outage must not end sessions.
type fetchAwareKeySet struct{ oidc.KeySet }

type keyFetchRecorder struct{ err error }

type keyFetchRecorderKey struct{}

// withKeyFetchRecorder returns a context under which fetchAwareKeySet
// records a key fetch failure into the returned recorder.
func withKeyFetchRecorder(ctx context.Context) (context.Context, *keyFetchRecorder) {
	r := &keyFetchRecorder{}
	return context.WithValue(ctx, keyFetchRecorderKey{}, r), r
}

// VerifySignature implements oidc.KeySet.
func (k fetchAwareKeySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	payload, err := k.KeySet.VerifySignature(ctx, jwt)
	if err != nil && keyFetchFailed(err) {
		if r, ok := ctx.Value(keyFetchRecorderKey{}).(*keyFetchRecorder); ok {
			r.err = err
		}
	}
	return payload, err
}

// keyFetchFailed recognises go-oidc's "fetching keys" errors: a transport
// failure (wrapped), or a non-200 answer from the JWKS endpoint (only in
// the message).
func keyFetchFailed(err error) bool {
	var ue *url.Error
	if errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrResponseTooLarge) || errors.Is(err, ErrRedirectNotFollowed) {
		return true
	}
	return strings.Contains(err.Error(), "oidc: get keys failed")
}
