package kube

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Audit outcomes.
const (
	OutcomeGranted = "granted"
	OutcomeRefused = "refused"
)

// Reasons of refusals, in AuditEvent.Reason.
const (
	ReasonUnauthenticated       = "unauthenticated"        // no or no valid token
	ReasonWrongToken            = "wrong-token"            // a token that may not buy credentials (a Backstage user token)
	ReasonSessionEnded          = "session-ended"          // signed out, expired, refused upstream
	ReasonBadRequest            = "bad-request"            // the body is not {"cluster": name}
	ReasonUnknownCluster        = "unknown-cluster"        // no such cluster
	ReasonNoStrategy            = "no-strategy"            // the cluster has no credential strategy
	ReasonRefused               = "strategy-refused"       // the strategy has no credential for this user
	ReasonStrategyMisconfigured = "strategy-misconfigured" // the strategy's options are wrong
	ReasonStrategyFailed        = "strategy-failed"        // the strategy failed or timed out
	ReasonSessionUnavailable    = "session-unavailable"    // the session could not be read or refreshed
	ReasonInternalError         = "internal-error"         // the daemon failed; its log has the details
)

// AuditEvent is one line of the audit log. It never holds a credential.
type AuditEvent struct {
	// Time is when the decision was made (UTC).
	Time time.Time `json:"time"`
	// Event is always "kubernetes.credential".
	Event string `json:"event"`
	// Outcome is OutcomeGranted or OutcomeRefused.
	Outcome string `json:"outcome"`
	// Reason is one of the Reason constants for a refusal.
	Reason string `json:"reason,omitempty"`
	// Message says why, for people.
	Message string `json:"message,omitempty"`
	// User is the Backstage user entity ref, when known.
	User string `json:"user,omitempty"`
	// Subject is the upstream (SpectroCloud) sub claim, when known.
	Subject string `json:"sub,omitempty"`
	// Env is the Backstage environment of the session, when known.
	Env string `json:"env,omitempty"`
	// Cluster is the cluster asked for, when known.
	Cluster string `json:"cluster,omitempty"`
	// Strategy is "plugin/strategy", when known.
	Strategy string `json:"strategy,omitempty"`
	// ExpiresAt is when a granted credential expires; absent when unknown.
	ExpiresAt *time.Time `json:"expiresAt,omitempty"`
	// Remote is the client's address.
	Remote string `json:"remote,omitempty"`
}

// AuditLog writes AuditEvents as JSON lines, one Write per line. A file
// sink follows log rotation: when the file at its path is no longer the one
// it has open (moved away or deleted by logrotate), the next event reopens
// the path, so no line goes to a file nobody reads.
type AuditLog struct {
	mu   sync.Mutex
	w    io.Writer
	path string   // file sinks only
	f    *os.File // the open file sink
}

// NewAuditLog writes to w.
func NewAuditLog(w io.Writer) *AuditLog { return &AuditLog{w: w} }

// OpenAuditLog opens the sink kubernetes.audit.sink names: "stderr", or a
// file path, opened for appending and created with mode 0600. An existing
// file readable by others is narrowed to 0600: the log names people and
// their access.
func OpenAuditLog(sink string) (*AuditLog, error) {
	if sink == "" || sink == "stderr" {
		return NewAuditLog(os.Stderr), nil
	}
	f, err := openAuditFile(sink)
	if err != nil {
		return nil, err
	}
	return &AuditLog{w: f, path: sink, f: f}, nil
}

func openAuditFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the audit log %s: %w", path, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("narrowing the audit log %s to mode 0600: %w", path, err)
		}
	}
	return f, nil
}

// followRotation reopens a file sink whose path now names another file, or
// none. Called with a.mu held.
func (a *AuditLog) followRotation() error {
	if a.f == nil {
		return nil
	}
	onDisk, err := os.Stat(a.path)
	if err == nil {
		if open, err := a.f.Stat(); err == nil && os.SameFile(onDisk, open) {
			return nil
		}
	}
	f, err := openAuditFile(a.path)
	if err != nil {
		return err
	}
	_ = a.f.Close()
	a.f, a.w = f, f
	return nil
}

// Record writes one event.
func (a *AuditLog) Record(e AuditEvent) error {
	e.Time = e.Time.UTC()
	if e.Event == "" {
		e.Event = "kubernetes.credential"
	}
	if e.ExpiresAt != nil {
		t := e.ExpiresAt.UTC()
		e.ExpiresAt = &t
	}
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encoding an audit event: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.followRotation(); err != nil {
		return err
	}
	if _, err := a.w.Write(b); err != nil {
		return fmt.Errorf("writing the audit log: %w", err)
	}
	return nil
}

// Close closes the file sink; stderr stays open.
func (a *AuditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	return a.f.Close()
}
