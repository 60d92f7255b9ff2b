package identity_test

import (
	"testing"

	"github.com/spectroauth/spectroauth/host/identity"
	"github.com/spectroauth/spectroauth/host/identity/identitytest"
)

// Every store passes the same suite; host/storage/postgres runs it too.
func TestKeyStoreConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		identitytest.RunKeyStore(t, func(*testing.T) identity.KeyStore { return identity.NewMemoryKeyStore() })
	})
	t.Run("file", func(t *testing.T) {
		identitytest.RunKeyStore(t, func(t *testing.T) identity.KeyStore {
			s, err := identity.OpenFileKeyStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}

func TestUserInfoStoreConformance(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		identitytest.RunUserInfoStore(t, func(*testing.T) identity.UserInfoStore { return identity.NewMemoryUserInfoStore() })
	})
	t.Run("file", func(t *testing.T) {
		identitytest.RunUserInfoStore(t, func(t *testing.T) identity.UserInfoStore {
			s, err := identity.OpenFileUserInfoStore(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}
