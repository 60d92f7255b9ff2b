package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/spectroauth/spectroauth/config"
	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/session"
	"github.com/spectroauth/spectroauth/host/storage/postgres"
)

// What CopyFileStorage did with the flow key (CopyReport.FlowKey).
const (
	// FlowKeyCopied: the database had none; it has the data directory's now.
	FlowKeyCopied = "copied"
	// FlowKeyPresent: the database already had the data directory's.
	FlowKeyPresent = "already present"
	// FlowKeyDifferent: the database already had another, left as it is.
	FlowKeyDifferent = "different"
	// FlowKeyNone: the data directory has no flow.key.
	FlowKeyNone = "none"
)

// CopyReport is what CopyFileStorage did, in counts: it holds no secret.
type CopyReport struct {
	// KeysCopied signing keys were added; KeysPresent were there already.
	KeysCopied, KeysPresent int
	// UserInfoCopied were added; UserInfoPresent were there already, the
	// same; UserInfoKept were there with other content, left as they are
	// (the user's next sign-in or refresh writes it again anyway).
	UserInfoCopied, UserInfoPresent, UserInfoKept int
	// SessionsCopied were added; SessionsExpired had expired and were
	// skipped; SessionsPresent were there already, the same; SessionsKept
	// were there with other content (renewed since), left as they are;
	// SessionsUnreadable are files that could not be read (logged).
	SessionsCopied, SessionsExpired, SessionsPresent, SessionsKept, SessionsUnreadable int
	// FlowKey is one of FlowKeyCopied, FlowKeyPresent, FlowKeyDifferent and
	// FlowKeyNone.
	FlowKey string
}

// Changed reports whether the copy wrote anything.
func (r CopyReport) Changed() bool {
	return r.KeysCopied+r.UserInfoCopied+r.SessionsCopied > 0 || r.FlowKey == FlowKeyCopied
}

// CopyFileStorage copies what a daemon on file storage keeps in its data
// directory from (its storage.path) into the PostgreSQL storage cfg names,
// so that replicas on that database take over without signing anyone out:
// the signing keys (tokens already issued keep verifying), the user info,
// the live sessions (the cookies name the same session keys) and, if the
// database has none yet, the flow key (sign-ins in flight complete).
//
// It reads the directory without changing it, so a daemon may still be
// running on it; but what that daemon writes after the copy (a sign-in, a
// renewal) is not copied: stop it first. It never overwrites: what the
// database already has is counted as present (or kept, when it differs),
// so running it again changes nothing. Errors name what failed and hold no
// secret; log receives the files and rows skipped as unreadable.
func CopyFileStorage(ctx context.Context, cfg *config.Config, from string, log hclog.Logger) (CopyReport, error) {
	var r CopyReport
	if cfg.Storage.Type != "postgres" {
		return r, fmt.Errorf("storage.type is %q: the copy goes into PostgreSQL storage, so the configuration must set storage.type: postgres and storage.postgresUrl", cfg.Storage.Type)
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}

	// Read everything first: a wrong directory fails before anything is
	// written.
	if fi, err := os.Stat(from); err != nil {
		return r, fmt.Errorf("reading the data directory: %w", err)
	} else if !fi.IsDir() {
		return r, fmt.Errorf("reading the data directory: %s is not a directory", from)
	}
	keys, err := identity.ReadFileKeys(ctx, from, identity.WithLogger(log.Named("keys")))
	if err != nil {
		return r, fmt.Errorf("reading the signing keys: %w", err)
	}
	infos, err := identity.ReadFileUserInfo(from, identity.WithLogger(log.Named("userinfo")))
	if err != nil {
		return r, fmt.Errorf("reading the user info: %w", err)
	}
	var sessions []fileSession
	r.SessionsExpired, r.SessionsUnreadable, err = session.ReadFileSessions(from, time.Now(), log.Named("sessions"), func(k session.Key, sess *session.Session) error {
		sessions = append(sessions, fileSession{k, sess})
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("reading the sessions: %w", err)
	}
	flowKey, err := readSecret(filepath.Join(from, "flow.key"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return r, fmt.Errorf("reading the flow key: %w", err)
	}

	db, err := postgres.Open(ctx, cfg.Storage.PostgresURL.Reveal(), postgres.Options{Logger: log.Named("postgres"), SweepInterval: -1})
	if err != nil {
		return r, fmt.Errorf("storage.postgresUrl: %w", err)
	}
	defer db.Close()

	if err := copyKeys(ctx, db.Keys(), keys, &r); err != nil {
		return r, err
	}
	if err := copyUserInfo(ctx, db.UserInfo(), infos, &r); err != nil {
		return r, err
	}
	if err := copySessions(ctx, db.Sessions(), sessions, &r); err != nil {
		return r, err
	}

	r.FlowKey = FlowKeyNone
	if flowKey != nil {
		set, same, err := db.SetFlowKeyIfNone(ctx, flowKey)
		switch {
		case err != nil:
			return r, fmt.Errorf("copying the flow key: %w", err)
		case set:
			r.FlowKey = FlowKeyCopied
		case same:
			r.FlowKey = FlowKeyPresent
		default:
			r.FlowKey = FlowKeyDifferent
		}
	}
	return r, nil
}

// copyKeys adds the keys the database does not have. A different key under
// a kid the database has is an error (AddKey refuses it).
func copyKeys(ctx context.Context, dst *postgres.KeyStore, keys []identity.Key, r *CopyReport) error {
	stored, err := dst.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("copying the signing keys: %w", err)
	}
	have := make(map[string]identity.Key, len(stored))
	for _, k := range stored {
		have[k.ID] = k
	}
	for _, k := range keys {
		if s, ok := have[k.ID]; ok && s.CreatedAt.Equal(k.CreatedAt) && s.Private != nil && s.Private.Equal(k.Private) {
			r.KeysPresent++
			continue
		}
		if err := dst.AddKey(ctx, k); err != nil {
			return fmt.Errorf("copying signing key %s: %w", k.ID, err)
		}
		r.KeysCopied++
	}
	return nil
}

// copyUserInfo adds the user info the database does not have.
func copyUserInfo(ctx context.Context, dst *postgres.UserInfoStore, infos []identity.UserInfo, r *CopyReport) error {
	for _, info := range infos {
		sub := info.Claims.Sub
		got, err := dst.Get(ctx, sub)
		switch {
		case err == nil && got.Equal(info):
			r.UserInfoPresent++
		case err == nil:
			r.UserInfoKept++
		case errors.Is(err, identity.ErrUserInfoNotFound):
			if err := dst.Put(ctx, sub, info); err != nil {
				return fmt.Errorf("copying the user info of %s: %w", sub, err)
			}
			r.UserInfoCopied++
		default:
			return fmt.Errorf("copying the user info of %s: %w", sub, err)
		}
	}
	return nil
}

// fileSession is a session read from the data directory.
type fileSession struct {
	key  session.Key
	sess *session.Session
}

// copySessions adds the sessions the database does not have.
func copySessions(ctx context.Context, dst *postgres.SessionStore, sessions []fileSession, r *CopyReport) error {
	for _, s := range sessions {
		got, err := dst.Get(ctx, s.key)
		switch {
		case err == nil && sameSession(got, s.sess):
			r.SessionsPresent++
		case err == nil:
			r.SessionsKept++
		case errors.Is(err, session.ErrNotFound):
			err := dst.Put(ctx, s.key, s.sess)
			if errors.Is(err, session.ErrExpired) { // it has expired since it was read
				r.SessionsExpired++
				continue
			}
			if err != nil {
				return fmt.Errorf("copying a session: %w", err)
			}
			r.SessionsCopied++
		default:
			return fmt.Errorf("copying a session: %w", err)
		}
	}
	return nil
}

// sameSession reports whether two sessions are stored the same.
func sameSession(a, b *session.Session) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
