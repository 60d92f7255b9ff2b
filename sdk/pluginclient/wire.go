package pluginclient

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/spectroauth/spectroauth/sdk"
	pluginv1 "github.com/spectroauth/spectroauth/sdk/internal/pluginv1"
	"github.com/spectroauth/spectroauth/sdk/internal/wire"
)

// remoteError is an error a plugin returned: its message as the plugin wrote
// it, matching (errors.Is, errors.As) the error it stands for.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }

// PluginRanOutOfTimeError is what a call returns, wrapped, when the plugin
// answered DEADLINE_EXCEEDED with reason ERROR_REASON_RAN_OUT_OF_TIME: its own work (an upstream it waited on) ran
// out of time, as opposed to the plugin giving no answer before the
// caller's deadline. It matches context.DeadlineExceeded.
type PluginRanOutOfTimeError struct{}

func (*PluginRanOutOfTimeError) Error() string { return context.DeadlineExceeded.Error() }

// Is makes errors.Is(err, context.DeadlineExceeded) hold.
func (*PluginRanOutOfTimeError) Is(target error) bool { return target == context.DeadlineExceeded }

// decodeError turns the status of a failed call back into the error the
// plugin returned; see the error section of plugin.proto.
func decodeError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := wire.TruncateMessage(st.Message())
	var detail *pluginv1.ErrorDetail
	for _, d := range st.Details() {
		if ed, ok := d.(*pluginv1.ErrorDetail); ok {
			detail = ed
			break
		}
	}
	switch st.Code() {
	case codes.NotFound:
		return &remoteError{msg: msg, err: sdk.ErrNotFound}
	case codes.InvalidArgument:
		var typed error
		switch {
		case detail.GetReason() == pluginv1.ErrorReason_ERROR_REASON_INVALID_CONFIG:
			typed = &sdk.ConfigError{Key: detail.GetKey(), Err: errors.New(wire.TruncateMessage(detail.GetMessage()))}
		case detail.GetReason() == pluginv1.ErrorReason_ERROR_REASON_INVALID_INPUT:
			typed = &sdk.InvalidInputError{Field: detail.GetKey(), Err: errors.New(wire.TruncateMessage(detail.GetMessage()))}
		default:
			return &sdk.InvalidInputError{Err: errors.New(msg)}
		}
		if typed.Error() == msg {
			return typed
		}
		return &remoteError{msg: msg, err: typed}
	case codes.DeadlineExceeded:
		// gRPC also makes up this code on the caller's side when its
		// deadline passes (and for a stream the plugin reset at its copy of
		// the deadline); only the plugin sends the reason.
		if detail.GetReason() == pluginv1.ErrorReason_ERROR_REASON_RAN_OUT_OF_TIME {
			return &remoteError{msg: "plugin call: " + msg, err: &PluginRanOutOfTimeError{}}
		}
		return &remoteError{msg: "plugin call: " + msg, err: context.DeadlineExceeded}
	case codes.Canceled:
		return &remoteError{msg: "plugin call: " + msg, err: context.Canceled}
	case codes.Unimplemented:
		return &remoteError{msg: "plugin does not implement this call: " + msg, err: errors.ErrUnsupported}
	}
	return &remoteError{msg: fmt.Sprintf("plugin call failed (%s): %s", st.Code(), msg), err: err}
}
