package session

import (
	"context"
	"sync"
	"time"
)

// MemoryStore is a Store in memory only: sessions end with the process.
// For tests and throw-away instances. It never sweeps on its own; expired
// sessions are invisible to Get and removed by Sweep.
type MemoryStore struct {
	now   func() time.Time
	index sync.Map // Key → *Session
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty in-memory store; only opts.Now is used.
func NewMemoryStore(opts Options) *MemoryStore {
	opts = opts.withDefaults()
	return &MemoryStore{now: opts.Now}
}

// Get implements Store.
func (m *MemoryStore) Get(_ context.Context, key Key) (*Session, error) {
	v, ok := m.index.Load(key)
	if !ok || v.(*Session).Expired(m.now()) {
		return nil, ErrNotFound
	}
	return v.(*Session).Clone(), nil
}

// Put implements Store.
func (m *MemoryStore) Put(_ context.Context, key Key, s *Session) error {
	if err := validate(s, m.now()); err != nil {
		return err
	}
	m.index.Store(key, s.Clone())
	return nil
}

// Replace implements Store.
func (m *MemoryStore) Replace(_ context.Context, key Key, s *Session) error {
	if err := validate(s, m.now()); err != nil {
		return err
	}
	c := s.Clone()
	for {
		old, ok := m.index.Load(key)
		if !ok || old.(*Session).Expired(m.now()) {
			return ErrNotFound
		}
		if m.index.CompareAndSwap(key, old, c) {
			return nil
		}
	}
}

// Delete implements Store.
func (m *MemoryStore) Delete(_ context.Context, key Key) error {
	m.index.Delete(key)
	return nil
}

// Sweep implements Store.
func (m *MemoryStore) Sweep(ctx context.Context) (int, error) {
	now := m.now()
	n := 0
	m.index.Range(func(k, v any) bool {
		if v.(*Session).Expired(now) && m.index.CompareAndDelete(k, v) {
			n++
		}
		return ctx.Err() == nil
	})
	return n, ctx.Err()
}

// ListByUser implements Store.
func (m *MemoryStore) ListByUser(_ context.Context, user string) ([]Entry, error) {
	now := m.now()
	var out []Entry
	m.index.Range(func(k, v any) bool {
		if s := v.(*Session); s.UserEntityRef == user && !s.Expired(now) {
			out = append(out, Entry{Key: k.(Key), Session: s.Clone()})
		}
		return true
	})
	return out, nil
}

// DeleteByUser implements Store.
func (m *MemoryStore) DeleteByUser(_ context.Context, user string) (int, error) {
	n := 0
	m.index.Range(func(k, v any) bool {
		if v.(*Session).UserEntityRef == user && m.index.CompareAndDelete(k, v) {
			n++
		}
		return true
	})
	return n, nil
}

// Close implements Store; it does nothing.
func (m *MemoryStore) Close() error { return nil }
