package apikeys

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// backend is a store.Store implementation the tests run against. The
// in-memory fake is always there; sqlite_test.go adds the real SQLite store.
type backend struct {
	name string
	open func(t testing.TB) store.Store
}

var backends = []backend{{name: "fake", open: func(testing.TB) store.Store { return newFakeStore() }}}

// forEachBackend runs f once per backend as a subtest.
func forEachBackend(t *testing.T, f func(t *testing.T, b backend)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b) })
	}
}

// fakeStore is an in-memory store.Store holding users and API keys with
// the semantics store.go documents (millisecond times included). Methods
// the apikeys package does not use panic through the nil embedded Store.
type fakeStore struct {
	store.Store

	mu    sync.Mutex
	users map[string]store.User
	keys  map[string]store.APIKey // by id
}

func newFakeStore() *fakeStore {
	return &fakeStore{users: map[string]store.User{}, keys: map[string]store.APIKey{}}
}

func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return time.UnixMilli(t.UnixMilli()).UTC()
}

func cloneKey(k store.APIKey) store.APIKey {
	k.Hash = slices.Clone(k.Hash)
	k.Scopes = slices.Clone(k.Scopes)
	return k
}

func (f *fakeStore) CreateUser(_ context.Context, u store.User) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, o := range f.users {
		if o.ID == u.ID || o.Email == u.Email {
			return store.ErrConflict
		}
	}
	u.Roles = slices.Clone(u.Roles)
	u.CreatedAt, u.UpdatedAt = ms(u.CreatedAt), ms(u.UpdatedAt)
	f.users[u.ID] = u
	return nil
}

func (f *fakeStore) GetUser(_ context.Context, id string) (store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return store.User{}, fmt.Errorf("user %w", store.ErrNotFound)
	}
	return u, nil
}

func (f *fakeStore) UpdateUser(_ context.Context, id string, updater func(store.User) (store.User, error)) (store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u, ok := f.users[id]
	if !ok {
		return store.User{}, store.ErrNotFound
	}
	nu, err := updater(u)
	if err != nil {
		return store.User{}, err
	}
	nu.ID, nu.CreatedAt = u.ID, u.CreatedAt
	f.users[id] = nu
	return nu, nil
}

func (f *fakeStore) CreateAPIKey(_ context.Context, k store.APIKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.users[k.UserID]; !ok {
		return fmt.Errorf("fake store: foreign key: no user %s", k.UserID)
	}
	for _, o := range f.keys {
		if o.ID == k.ID || bytes.Equal(o.Hash, k.Hash) {
			return store.ErrConflict
		}
	}
	k = cloneKey(k)
	k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.RevokedAt = ms(k.CreatedAt), ms(k.ExpiresAt), ms(k.LastUsedAt), ms(k.RevokedAt)
	f.keys[k.ID] = k
	return nil
}

func (f *fakeStore) GetAPIKey(_ context.Context, id string) (store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[id]
	if !ok {
		return store.APIKey{}, fmt.Errorf("key %w", store.ErrNotFound)
	}
	return cloneKey(k), nil
}

func (f *fakeStore) LookupAPIKey(_ context.Context, hash []byte) (store.APIKey, store.User, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if bytes.Equal(k.Hash, hash) {
			return cloneKey(k), f.users[k.UserID], nil
		}
	}
	return store.APIKey{}, store.User{}, store.ErrNotFound
}

func (f *fakeStore) ListAPIKeys(_ context.Context, userID string) ([]store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.APIKey
	for _, k := range f.keys {
		if userID == "" || k.UserID == userID {
			out = append(out, cloneKey(k))
		}
	}
	slices.SortFunc(out, func(a, b store.APIKey) int { return b.CreatedAt.Compare(a.CreatedAt) })
	return out, nil
}

func (f *fakeStore) RevokeAPIKey(_ context.Context, id string, at time.Time) (store.APIKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.keys[id]
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	if k.RevokedAt.IsZero() || ms(at).Before(k.RevokedAt) {
		k.RevokedAt = ms(at)
		f.keys[id] = k
	}
	return cloneKey(k), nil
}

func (f *fakeStore) TouchAPIKeys(_ context.Context, lastUsed map[string]time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, at := range lastUsed {
		k, ok := f.keys[id]
		if ok && ms(at).After(k.LastUsedAt) {
			k.LastUsedAt = ms(at)
			f.keys[id] = k
		}
	}
	return nil
}

func (f *fakeStore) Close() error { return nil }

// spyStore wraps a store, counting the calls the cache is meant to save and
// injecting failures.
type spyStore struct {
	store.Store

	lookups atomic.Int64

	mu                 sync.Mutex
	lookupErr          error
	touchErr           error
	touches            []map[string]time.Time // every TouchAPIKeys batch
	beforeLookupReturn func()                 // runs after the row was read, before it is returned
}

func (s *spyStore) LookupAPIKey(ctx context.Context, hash []byte) (store.APIKey, store.User, error) {
	s.lookups.Add(1)
	s.mu.Lock()
	err, hook := s.lookupErr, s.beforeLookupReturn
	s.mu.Unlock()
	if err != nil {
		return store.APIKey{}, store.User{}, err
	}
	k, u, err := s.Store.LookupAPIKey(ctx, hash)
	if hook != nil {
		hook()
	}
	return k, u, err
}

func (s *spyStore) TouchAPIKeys(ctx context.Context, lastUsed map[string]time.Time) error {
	s.mu.Lock()
	err := s.touchErr
	if err == nil {
		s.touches = append(s.touches, maps.Clone(lastUsed))
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.Store.TouchAPIKeys(ctx, lastUsed)
}

func (s *spyStore) setLookupErr(err error) {
	s.mu.Lock()
	s.lookupErr = err
	s.mu.Unlock()
}

func (s *spyStore) setTouchErr(err error) {
	s.mu.Lock()
	s.touchErr = err
	s.mu.Unlock()
}

func (s *spyStore) touchBatches() []map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.touches)
}

// recorder is an audit.Recorder that keeps events in memory.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) ofType(typ string) []audit.Event {
	var out []audit.Event
	for _, e := range r.all() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

// t0 is where test clocks start; deliberately not on a millisecond boundary.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123_456_789, time.UTC)

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// env is one Service under test with everything around it.
type env struct {
	t     testing.TB
	ctx   context.Context
	raw   store.Store // the backend, bypassing the Service: "another node"
	spy   *spyStore
	clock *clock
	rec   *recorder
	logs  *syncBuffer
	svc   *Service
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv builds a Service on b. Options.Now and Logger are filled in.
func newEnv(t testing.TB, b backend, opts Options) *env {
	t.Helper()
	raw := b.open(t)
	e := &env{
		t:     t,
		ctx:   context.Background(),
		raw:   raw,
		spy:   &spyStore{Store: raw},
		clock: &clock{t: t0},
		rec:   &recorder{},
		logs:  &syncBuffer{},
	}
	opts.Now = e.clock.Now
	opts.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.svc = New(e.spy, e.rec, opts)
	return e
}

// user creates a user directly in the store.
func (e *env) user() store.User {
	e.t.Helper()
	id := store.NewID("usr")
	u := store.User{ID: id, Email: id + "@example.com", DisplayName: "User " + id, CreatedAt: t0, UpdatedAt: t0}
	if err := e.raw.CreateUser(e.ctx, u); err != nil {
		e.t.Fatalf("CreateUser: %v", err)
	}
	return u
}

// issue creates a key through the Service.
func (e *env) issue(req IssueRequest) (string, store.APIKey) {
	e.t.Helper()
	plain, k, err := e.svc.Issue(e.ctx, req)
	if err != nil {
		e.t.Fatalf("Issue(%+v): %v", req, err)
	}
	return plain, k
}

// key creates a user and a key for it with the given scopes.
func (e *env) key(scopes ...string) (string, store.APIKey) {
	e.t.Helper()
	return e.issue(IssueRequest{UserID: e.user().ID, Name: "test key", Scopes: scopes})
}

// setDisabled disables or enables a user directly in the store (as another
// node would).
func (e *env) setDisabled(userID string, disabled bool) {
	e.t.Helper()
	_, err := e.raw.UpdateUser(e.ctx, userID, func(u store.User) (store.User, error) {
		u.Disabled = disabled
		u.UpdatedAt = e.clock.Now()
		return u, nil
	})
	if err != nil {
		e.t.Fatalf("UpdateUser: %v", err)
	}
}

// revokeInStore revokes a key directly in the store (as another node would).
func (e *env) revokeInStore(id string) {
	e.t.Helper()
	if _, err := e.raw.RevokeAPIKey(e.ctx, id, e.clock.Now()); err != nil {
		e.t.Fatalf("RevokeAPIKey: %v", err)
	}
}

// lookups counts database lookups so far.
func (e *env) lookups() int64 { return e.spy.lookups.Load() }
