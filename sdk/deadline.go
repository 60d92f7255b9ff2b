package sdk

import (
	"context"
	"time"
)

// Bounds of deadlineMargin.
const (
	maxDeadlineMargin = 250 * time.Millisecond
	minDeadlineMargin = 10 * time.Millisecond
)

// deadlineMargin is how much sooner than the host's deadline, when that is
// left away, a plugin's method must be done: a tenth of left, at most
// maxDeadlineMargin and at least minDeadlineMargin. That is time for the
// plugin's answer to reach the host before the host gives up on the call.
func deadlineMargin(left time.Duration) time.Duration {
	return max(min(left/10, maxDeadlineMargin), minDeadlineMargin)
}

// handlerContext is the context a plugin's method runs with: ctx, but with
// a deadline deadlineMargin before the host's, so that a method that
// honours its context returns, and its answer (that it ran out of time,
// see ownDeadline) reaches the host, before the host's deadline. Had the
// host's deadline passed instead, the host would count the call as one the
// plugin did not answer, and restart a plugin that misses several in a
// row. A call without a deadline keeps having none.
func handlerContext(ctx context.Context) (context.Context, context.CancelFunc) {
	dl, ok := ctx.Deadline()
	if !ok {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, dl.Add(-deadlineMargin(time.Until(dl))))
}

// ownDeadline returns the error err of a plugin's method that ran with
// hctx: a *deadlineError when hctx ran out (the method gave up because its
// own deadline passed), else err as it is.
func ownDeadline(hctx context.Context, err error) error {
	if err != nil && hctx.Err() == context.DeadlineExceeded {
		return &deadlineError{err}
	}
	return err
}

// deadlineError is the error of a plugin's method that gave up when its
// context's deadline, a margin before the host's, passed: typically an
// upstream that did not answer in time. It goes over the wire as
// DEADLINE_EXCEEDED with an ErrorDetail whose reason is
// ERROR_REASON_RAN_OUT_OF_TIME, whatever the method's error was, so that
// the host knows the plugin answered that its own work ran out of time,
// even when it reads the answer after its own deadline.
type deadlineError struct{ err error }

func (e *deadlineError) Error() string {
	return "the plugin's own work ran out of time: " + e.err.Error()
}

func (e *deadlineError) Unwrap() error { return e.err }
