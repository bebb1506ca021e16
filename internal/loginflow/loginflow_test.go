package loginflow

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func newFlows(t *testing.T, st store.LoginFlowStore, serverKey []byte, now func() time.Time) *Flows {
	t.Helper()
	fl, err := New(Options{Store: st, ServerKey: serverKey, Now: now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func upstreamFlow(state string, now time.Time) store.LoginFlow {
	return store.LoginFlow{Kind: store.LoginFlowUpstream, Provider: "corp", StateHash: Hash(state),
		ReturnTo: "/account", Source: "192.0.2.1", CreatedAt: now, ExpiresAt: now.Add(TTL)}
}

// TestSecretsAcrossNodes: secrets sealed by one node open on another with
// the same server key, and nowhere else: not with another key, not moved
// to another row.
func TestSecretsAcrossNodes(t *testing.T) {
	db := storetest.SQLite(t)
	a, b := newFlows(t, db, key, nil), newFlows(t, db, bytes.Clone(key), nil)
	secret := []byte(`{"v":"verifier","n":"nonce"}`)
	f, err := a.Create(t.Context(), upstreamFlow(Token(), time.Now()), secret)
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.GetLoginFlow(t.Context(), f.Kind, f.StateHash)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got.Sealed, []byte("verifier")) {
		t.Fatal("the secret is stored in clear")
	}
	if pt, err := b.Open(got); err != nil || !bytes.Equal(pt, secret) {
		t.Fatalf("Open on the other node = %q, %v", pt, err)
	}
	other := newFlows(t, db, []byte("another server key, 32 bytes...."), nil)
	if _, err := other.Open(got); err == nil {
		t.Error("opened with another server key")
	}
	moved := got
	moved.ID = store.NewID("lgf")
	if _, err := b.Open(moved); err == nil {
		t.Error("sealed secrets opened on another row")
	}
	if _, err := New(Options{Store: db, ServerKey: key[:31]}); err == nil {
		t.Error("a 31-byte server key was accepted")
	}
}

// TestBinding: the binding cookie any node with the server key checks, of
// one state and kind only.
func TestBinding(t *testing.T) {
	db := storetest.SQLite(t)
	a, b := newFlows(t, db, key, nil), newFlows(t, db, key, nil)
	other := newFlows(t, db, []byte("another server key, 32 bytes...."), nil)
	state := Token()
	req := func(value string) *http.Request {
		r := httptest.NewRequest("GET", "/login/callback", nil)
		r.AddCookie(&http.Cookie{Name: "c", Value: value})
		return r
	}
	v := a.Binding(store.LoginFlowCustom, state)
	if !b.Bound(req(v), "c", store.LoginFlowCustom, state) {
		t.Fatal("the other node refuses the binding")
	}
	for name, ok := range map[string]bool{
		"another key":   other.Bound(req(v), "c", store.LoginFlowCustom, state),
		"another kind":  b.Bound(req(v), "c", store.LoginFlowUpstream, state),
		"another state": b.Bound(req(v), "c", store.LoginFlowCustom, Token()),
		"no cookie":     b.Bound(httptest.NewRequest("GET", "/", nil), "c", store.LoginFlowCustom, state),
		"empty cookie":  b.Bound(req(""), "c", store.LoginFlowCustom, state),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestCreateCapAndClean(t *testing.T) {
	db := storetest.SQLite(t)
	now := time.Now()
	clock := func() time.Time { return now }
	fl, err := New(Options{Store: db, ServerKey: key, MaxPending: 2, Now: clock, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := fl.Create(t.Context(), upstreamFlow(Token(), now), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := fl.Create(t.Context(), upstreamFlow(Token(), now), nil); !errors.Is(err, store.ErrFull) {
		t.Fatalf("third flow with MaxPending 2: %v, want ErrFull", err)
	}
	now = now.Add(TTL + time.Second)
	if n, err := fl.Clean(t.Context()); n != 2 || err != nil {
		t.Fatalf("Clean = %d, %v; want the 2 expired flows", n, err)
	}
	if _, err := fl.Create(t.Context(), upstreamFlow(Token(), now), nil); err != nil {
		t.Fatalf("after the clean: %v", err)
	}
}
