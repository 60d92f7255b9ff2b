package sdk

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDeadlineMargin(t *testing.T) {
	tests := []struct{ left, want time.Duration }{
		{time.Minute, 250 * time.Millisecond},
		{5 * time.Second, 250 * time.Millisecond},
		{2 * time.Second, 200 * time.Millisecond}, // the default callTimeout
		{300 * time.Millisecond, 30 * time.Millisecond},
		{100 * time.Millisecond, 10 * time.Millisecond},
		{50 * time.Millisecond, 10 * time.Millisecond},
		{0, 10 * time.Millisecond},
		{-time.Second, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := deadlineMargin(tt.left); got != tt.want {
			t.Errorf("deadlineMargin(%s) = %s, want %s", tt.left, got, tt.want)
		}
	}
}

func TestHandlerContext(t *testing.T) {
	hctx, cancel := handlerContext(context.Background())
	defer cancel()
	if _, ok := hctx.Deadline(); ok {
		t.Error("a call without a deadline got one")
	}

	ctx, cancelHost := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancelHost()
	host, _ := ctx.Deadline()
	hctx, cancel = handlerContext(ctx)
	defer cancel()
	own, ok := hctx.Deadline()
	if !ok {
		t.Fatal("the method's context has no deadline")
	}
	// A tenth of what was left (a hair less than 2s) before the host's.
	if d := host.Sub(own); d < 190*time.Millisecond || d > 200*time.Millisecond {
		t.Errorf("the method's deadline is %s before the host's, want about 200ms", d)
	}
	cancelHost()
	if !errors.Is(hctx.Err(), context.Canceled) {
		t.Errorf("the host's cancellation did not reach the method's context: %v", hctx.Err())
	}

	// Once the method's own deadline has passed, its error says so.
	// The host's deadline is long enough (its tenth, 50ms, is the margin)
	// that a scheduler delay on a loaded machine does not let it pass first.
	ctx, cancelHost = context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancelHost()
	hctx, cancel = handlerContext(ctx)
	defer cancel()
	<-hctx.Done()
	if ctx.Err() != nil {
		t.Fatal("the host's deadline passed first")
	}
	upstream := errors.New("catalog did not answer")
	err := ownDeadline(hctx, upstream)
	var de *deadlineError
	if !errors.As(err, &de) || !errors.Is(err, upstream) || err.Error() != "the plugin's own work ran out of time: catalog did not answer" {
		t.Errorf("ownDeadline = %#v (%q)", err, err)
	}
	if err := ownDeadline(hctx, nil); err != nil {
		t.Errorf("ownDeadline of a success = %v", err)
	}
	// A context that did not run out (cancelled, or still running) leaves
	// the error as it is.
	live, cancelLive := context.WithCancel(context.Background())
	if err := ownDeadline(live, upstream); err != upstream {
		t.Errorf("ownDeadline with a live context = %v", err)
	}
	cancelLive()
	if err := ownDeadline(live, upstream); err != upstream {
		t.Errorf("ownDeadline with a cancelled context = %v", err)
	}
}
