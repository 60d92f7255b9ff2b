package upstream

import (
	"context"
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
//
// The timeout is the transport's, not http.Client.Timeout: net/http applies
// Client.Timeout through a request context only for its own transports; for
// a wrapping one like boundedTransport it starts two goroutines per request
// (a timer watcher and a legacy Request.Cancel watcher), and waking them to
// exit costs the sign-in thread wake-ups.
func newBackChannelClient(base *http.Client, timeout time.Duration, limit int64) *http.Client {
	var rt http.RoundTripper = http.DefaultTransport
	if base != nil && base.Transport != nil {
		rt = base.Transport
	}
	return &http.Client{
		Transport: &boundedTransport{next: rt, limit: limit, timeout: timeout},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			return fmt.Errorf("%w: %s redirected to %s", ErrRedirectNotFollowed, redactURL(via[len(via)-1].URL), redactURL(req.URL))
		},
	}
}

// boundedTransport fails responses whose body exceeds limit bytes, instead
// of letting a provider make the daemon buffer an unbounded body, and bounds
// each request, the reading of its body included, by timeout (none when
// zero) as http.Client.Timeout would.
type boundedTransport struct {
	next    http.RoundTripper
	limit   int64
	timeout time.Duration
}

func (t *boundedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	cancel := context.CancelFunc(func() {})
	if t.timeout > 0 {
		var ctx context.Context
		// Not WithTimeoutCause: the transport returns the cause, and a
		// timeout must match context.DeadlineExceeded (Unavailable).
		ctx, cancel = context.WithTimeout(req.Context(), t.timeout)
		req = req.WithContext(ctx)
	}
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.ContentLength > t.limit {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("%w: %s announced %d bytes, the limit is %d", ErrResponseTooLarge, redactURL(req.URL), resp.ContentLength, t.limit)
	}
	resp.Body = &boundedBody{rc: resp.Body, limit: t.limit, req: req, cancel: cancel}
	return resp, nil
}

// boundedBody is a response body of boundedTransport: its reads are
// bounded, and closing it (or reading it to the end) ends the request's
// timeout.
type boundedBody struct {
	rc     io.ReadCloser
	limit  int64
	read   int64
	req    *http.Request // for the error of an oversized body
	cancel context.CancelFunc
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
	if err == io.EOF {
		b.cancel() // read to the end: the connection is back in the pool
	}
	return n, err
}

func (b *boundedBody) tooLarge() error {
	return fmt.Errorf("%w: %s sent more than %d bytes", ErrResponseTooLarge, redactURL(b.req.URL), b.limit)
}

func (b *boundedBody) Close() error {
	err := b.rc.Close()
	b.cancel()
	return err
}

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
