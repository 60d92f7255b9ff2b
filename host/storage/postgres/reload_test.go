package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/identity/identitytest"
)

// countingKeys counts the reads of a key store.
type countingKeys struct {
	identity.KeyStore
	reads atomic.Int64
}

func (c *countingKeys) ListKeys(ctx context.Context) ([]identity.Key, error) {
	c.reads.Add(1)
	return c.KeyStore.ListKeys(ctx)
}

// forgedToken is a user token signed by a key no store holds, claiming to
// be issued now: what an attacker sends to make Verify read the store.
func forgedToken(t *testing.T) string {
	t.Helper()
	k := identitytest.NewKey(t, time.Now())
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.Private},
		(&jose.SignerOptions{}).WithType(identity.TypeUser).WithHeader("kid", k.ID))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(map[string]any{"sub": "user:default/mallory", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()})
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// A database that hangs (here: a lock the key read waits for, until the
// statement timeout) is read once at a time for all the callers that wait
// for a read, not once for each of them in turn: a flood of tokens with
// forged kids does not queue one timed-out read per token, and the JWKS
// route, which Backstage backends fetch with a short timeout of their own,
// answers from memory promptly instead of queueing behind them.
func TestKeyReloadsWhileTheDatabaseHangs(t *testing.T) {
	db, dsn := open(t, Options{QueryTimeout: time.Second})
	ctx := context.Background()
	keys := &countingKeys{KeyStore: db.Keys()}
	iss, err := identity.New(identity.Config{Issuer: "https://auth.example.com/api/auth", KeyStore: keys, UserInfo: db.UserInfo(), SharedKeyStore: true})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := iss.Issue(ctx, identity.Claims{Subject: "user:default/alice"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jose.ParseSigned(tok.Raw, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	kid := parsed.Signatures[0].Header.KeyID

	hang := holdLocks(t, dsn, `LOCK TABLE spectroauth_signing_keys IN ACCESS EXCLUSIVE MODE`)

	const forgers, fetchers = 20, 5
	before := keys.reads.Load()
	start := time.Now()
	var wg sync.WaitGroup
	for range forgers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := iss.Verify(ctx, forgedToken(t)); !errors.Is(err, identity.ErrInvalidToken) {
				t.Errorf("forged token: %v", err)
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	var slowest atomic.Int64
	for range fetchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			began := time.Now()
			doc := iss.FreshJWKS(ctx)
			if d := time.Since(began); int64(d) > slowest.Load() {
				slowest.Store(int64(d))
			}
			if !strings.Contains(string(doc), kid) {
				t.Errorf("JWKS while the database hangs lacks the key in use: %s", doc)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	reads := keys.reads.Load() - before
	if reads > 3 {
		t.Errorf("%d callers waiting for a hung database read the key store %d times, one after the other (%s)", forgers+fetchers, reads, elapsed.Round(time.Millisecond))
	}
	if s := time.Duration(slowest.Load()); s > 2500*time.Millisecond {
		t.Errorf("the JWKS took %s to answer while the database hung", s.Round(time.Millisecond))
	}

	// The database is back: the next reads work at once.
	hang.release()
	time.Sleep(300 * time.Millisecond) // past the gap between reads
	if _, err := iss.Verify(ctx, forgedToken(t)); !errors.Is(err, identity.ErrInvalidToken) {
		t.Fatalf("forged token: %v", err)
	}
	if _, err := iss.Verify(ctx, tok.Raw); err != nil {
		t.Fatal(err)
	}
}
