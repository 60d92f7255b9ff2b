package upstream

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// DefaultMaxResponseBytes bounds every back-channel response body.
const DefaultMaxResponseBytes = 1 << 20

// newBackChannelClient wraps base (its Transport, for TLS roots or proxies)
// into the client for discovery, JWKS, token, userinfo and revocation calls:
// a per-request timeout, no redirects, no cookies, bounded bodies.
func newBackChannelClient(base *http.Client, timeout time.Duration, limit int64) *http.Client {
	var rt http.RoundTripper = http.DefaultTransport
	if base != nil && base.Transport != nil {
		rt = base.Transport
	}
	return &http.Client{
		Transport: &boundedTransport{next: rt, limit: limit},
		Timeout:   timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return fmt.Errorf("%w: %s redirected to %s", ErrRedirectNotFollowed, redactURL(via[len(via)-1].URL), redactURL(req.URL))
		},
	}
}

// boundedTransport fails responses whose body exceeds limit bytes, instead
// of letting a provider make the daemon buffer an unbounded body.
type boundedTransport struct {
	next  http.RoundTripper
	limit int64
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.limit {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %s announced %d bytes, the limit is %d", ErrResponseTooLarge, redactURL(req.URL), resp.ContentLength, t.limit)
	}
	resp.Body = &boundedBody{rc: resp.Body, limit: t.limit, url: redactURL(req.URL)}
	return resp, nil
}

type boundedBody struct {
	rc    io.ReadCloser
	limit int64
	read  int64
	url   string
}

func (b *boundedBody) Read(p []byte) (int, error) {
	if b.read > b.limit {
		return 0, b.tooLarge()
	}
	// Read at most one byte past the limit, to tell "exactly at the limit"
	// from "over it".
	if room := b.limit - b.read + 1; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.read += int64(n)
	if b.read > b.limit {
		return n - int(b.read-b.limit), b.tooLarge()
	}
	return n, err
}

func (b *boundedBody) tooLarge() error {
	return fmt.Errorf("%w: %s sent more than %d bytes", ErrResponseTooLarge, b.url, b.limit)
}

func (b *boundedBody) Close() error { return b.rc.Close() }

// NewBackChannelClient is the client the provider uses for its back
// channel (base's Transport, a per-request timeout, no redirects, no
// cookies, bodies bounded to limit bytes), for other daemon parts that call
// the provider's services, such as Palette's API.
func NewBackChannelClient(base *http.Client, timeout time.Duration, limit int64) *http.Client {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if limit <= 0 {
		limit = DefaultMaxResponseBytes
	}
	return newBackChannelClient(base, timeout, limit)
}
