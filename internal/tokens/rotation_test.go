package tokens

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
	"github.com/mcpgate/mcpgate/verify"
)

// TestRotationSchedule follows one key generation after another with a
// fake clock and checks, at each step, which key signs, what the JWKS
// publishes and what the store keeps.
func TestRotationSchedule(t *testing.T) {
	ctx := t.Context()
	st := sqliteStore(t)
	clk := &clock{now: t0}
	var created []store.SigningKey
	i := newIssuer(t, st, clk, func(o *Options) {
		o.OnKeyCreated = func(k store.SigningKey) { created = append(created, k) }
	})
	v := verifierFor(t, i, clk)

	// The first key signs at once.
	keys := storedKeys(t, st)
	if len(keys) != 1 || keys[0].Generation != 1 || !keys[0].ActivatesAt.Equal(t0) || keys[0].Algorithm != AlgES256 {
		t.Fatalf("first key = %+v", keys)
	}
	k1 := keys[0].ID
	if len(created) != 1 || created[0].ID != k1 || created[0].PrivateKey != nil {
		t.Errorf("OnKeyCreated = %+v, want the first key without its private key", created)
	}
	tok1 := mintAT(t, i)
	if kidOf(t, tok1) != k1 {
		t.Fatal("first token not signed by the first key")
	}
	if d := cmp.Diff([]string{k1}, jwksKids(t, i)); d != "" {
		t.Errorf("JWKS at start (-want +got):\n%s", d)
	}

	// Nothing happens before the rotation is due.
	clk.Add(DefaultRotateEvery - DefaultPublishLead - time.Second)
	if err := i.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(storedKeys(t, st)); n != 1 {
		t.Fatalf("%d keys before the rotation is due", n)
	}

	// Due: the next key is created and published, but does not sign yet.
	clk.Add(time.Second)
	rotateAt := clk.Now()
	if err := i.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	keys = storedKeys(t, st)
	if len(keys) != 2 || keys[0].Generation != 2 {
		t.Fatalf("after the rotation: %d keys", len(keys))
	}
	k2 := keys[0].ID
	switchAt := rotateAt.Add(DefaultPublishLead)
	if !keys[0].ActivatesAt.Equal(switchAt) || !keys[1].RetiresAt.Equal(switchAt) {
		t.Errorf("generation 2 activates at %v and generation 1 retires at %v; want both %v", keys[0].ActivatesAt, keys[1].RetiresAt, switchAt)
	}
	if d := cmp.Diff([]string{k2, k1}, jwksKids(t, i)); d != "" {
		t.Errorf("JWKS during the publish lead (-want +got):\n%s", d)
	}
	if kid := kidOf(t, mintAT(t, i)); kid != k1 {
		t.Errorf("during the publish lead the token is signed by %s, want the old key", kid)
	}

	// At the activation the new key signs, without a reload.
	clk.Add(DefaultPublishLead - time.Millisecond)
	lastOld := mintAT(t, i)
	if kidOf(t, lastOld) != k1 {
		t.Error("the new key signs before its activation")
	}
	clk.Add(time.Millisecond)
	if kid := kidOf(t, mintAT(t, i)); kid != k2 {
		t.Errorf("after the activation the token is signed by %s, want the new key", kid)
	}

	// The old key stays published until its last token has expired
	// (retirement + token lifetime + skew + lead), then goes.
	keep := DefaultAccessTokenTTL + DefaultClockSkew + DefaultPublishLead
	clk.Add(DefaultAccessTokenTTL)
	if _, err := v.Verify(ctx, lastOld); err != nil {
		t.Errorf("the old key's last token refused before it expired: %v", err)
	}
	clk.Add(keep - DefaultAccessTokenTTL - time.Millisecond)
	if err := i.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{k2, k1}, jwksKids(t, i)); d != "" {
		t.Errorf("JWKS just before the old key goes (-want +got):\n%s", d)
	}
	clk.Add(2 * time.Millisecond)
	if err := i.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{k2}, jwksKids(t, i)); d != "" {
		t.Errorf("JWKS after the old key's tokens expired (-want +got):\n%s", d)
	}
	if keys := storedKeys(t, st); len(keys) != 1 || keys[0].ID != k2 {
		t.Errorf("store after pruning holds %d keys", len(keys))
	}

	// And the next rotation, 30 days after the second key activated.
	clk.Add(switchAt.Add(DefaultRotateEvery - DefaultPublishLead).Sub(clk.Now()))
	if err := i.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := storedKeys(t, st); len(keys) != 2 || keys[0].Generation != 3 {
		t.Errorf("third rotation: %d keys, newest generation %d", len(keys), keys[0].Generation)
	}
	if len(created) != 3 {
		t.Errorf("OnKeyCreated called %d times, want 3", len(created))
	}
}

// TestRotationManyNodes: several nodes sharing a store and a clock rotate
// at the same moment; one key is created, every node publishes it and all
// switch to it at its activation.
func TestRotationManyNodes(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) { testRotationManyNodes(t, db) })
}

func testRotationManyNodes(t *testing.T, st store.SigningKeyStore) {
	ctx := t.Context()
	clk := &clock{now: t0}
	var nodes []*Issuer
	var mu sync.Mutex
	createdBy := 0
	for range 5 {
		nodes = append(nodes, newIssuer(t, st, clk, func(o *Options) {
			o.OnKeyCreated = func(store.SigningKey) { mu.Lock(); createdBy++; mu.Unlock() }
		}))
	}
	if n := len(storedKeys(t, st)); n != 1 || createdBy != 1 {
		t.Fatalf("nodes starting on an empty store created %d keys (%d callbacks), want 1", n, createdBy)
	}
	clk.Add(DefaultRotateEvery)
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() {
			if err := n.Sync(ctx); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	keys := storedKeys(t, st)
	if len(keys) != 2 || createdBy != 2 {
		t.Fatalf("concurrent rotation stored %d keys (%d callbacks), want 2", len(keys), createdBy)
	}
	clk.Add(DefaultPublishLead)
	for n, node := range nodes {
		if kid := kidOf(t, mintAT(t, node)); kid != keys[0].ID {
			t.Errorf("node %d signs with %s, want the new key %s", n, kid, keys[0].ID)
		}
		if !slices.Equal(jwksKids(t, node), []string{keys[0].ID, keys[1].ID}) {
			t.Errorf("node %d publishes %v", n, jwksKids(t, node))
		}
	}
}

// TestRotationNodeThatMissedIt: a node that did not sync since another
// node rotated still switches keys on time, because it syncs well within
// the publish lead; and verifying a token with a kid it does not know
// makes it reload.
func TestRotationNodeThatMissedIt(t *testing.T) {
	ctx := t.Context()
	st := sqliteStore(t)
	clk := &clock{now: t0}
	a := newIssuer(t, st, clk)
	b := newIssuer(t, st, clk)
	clk.Add(DefaultRotateEvery)
	if err := a.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	newKid := storedKeys(t, st)[0].ID
	clk.Add(DefaultRefreshEvery)
	if err := b.Sync(ctx); err != nil { // b's periodic refresh, long before the activation
		t.Fatal(err)
	}
	clk.Add(DefaultPublishLead - DefaultRefreshEvery)
	if kid := kidOf(t, mintAT(t, b)); kid != newKid {
		t.Errorf("node b signs with %s after the activation, want %s", kid, newKid)
	}
}

// TestAlgorithmChange: restarting with another algorithm publishes a key
// of the new algorithm, which takes over after the publish lead; every
// algorithm mints tokens that verify.
func TestAlgorithmChange(t *testing.T) {
	ctx := t.Context()
	st := sqliteStore(t)
	clk := &clock{now: t0}
	newIssuer(t, st, clk)
	for n, alg := range []string{AlgEdDSA, AlgRS256, AlgES256} {
		i := newIssuer(t, st, clk, func(o *Options) { o.Algorithm = alg })
		keys := storedKeys(t, st)
		if keys[0].Algorithm != alg || keys[0].Generation != int64(n+2) {
			t.Fatalf("restart with %s: newest key %s generation %d", alg, keys[0].Algorithm, keys[0].Generation)
		}
		if h, _ := decodeJWT(t, mintAT(t, i)); h["alg"] != keys[1].Algorithm {
			t.Errorf("during the lead the token is %v, want the previous %s", h["alg"], keys[1].Algorithm)
		}
		clk.Add(DefaultPublishLead)
		tok := mintAT(t, i)
		if h, _ := decodeJWT(t, tok); h["alg"] != alg {
			t.Errorf("after the lead the token is %v, want %s", h["alg"], alg)
		}
		if _, err := verifierFor(t, i, clk).Verify(ctx, tok); err != nil {
			t.Errorf("%s token refused: %v", alg, err)
		}
		// A second restart with the same algorithm does not rotate again.
		newIssuer(t, st, clk, func(o *Options) { o.Algorithm = alg })
		if n := storedKeys(t, st)[0].Generation; n != keys[0].Generation {
			t.Errorf("restart with an unchanged algorithm rotated (generation %d)", n)
		}
	}
	// A node configured differently starting during another's lead does
	// not rotate back.
	newIssuer(t, st, clk, func(o *Options) { o.Algorithm = AlgEdDSA })
	before := storedKeys(t, st)[0].Generation
	newIssuer(t, st, clk, func(o *Options) { o.Algorithm = AlgES256 })
	if after := storedKeys(t, st)[0].Generation; after != before {
		t.Errorf("a node with another algorithm rotated during the lead (generation %d → %d)", before, after)
	}
}

// TestTamperedKeyRowIgnored: a stored row whose public key was replaced
// (its thumbprint no longer matches its kid) is neither published nor
// used; with it as the only key the issuer cannot sign.
func TestTamperedKeyRowIgnored(t *testing.T) {
	st := &tamperStore{SigningKeyStore: sqliteStore(t)}
	clk := &clock{now: t0}
	i := newIssuer(t, st, clk)
	kid := jwksKids(t, i)[0]
	other, _, err := newSigningKey(i.seal, AlgES256, 1, store.SigningKey{})
	if err != nil {
		t.Fatal(err)
	}
	st.swapJWK = other.PublicJWK
	if err := i.Sync(t.Context()); err == nil {
		t.Error("Sync with only a tampered key succeeded")
	}
	if got := jwksKids(t, i); len(got) != 1 || got[0] != kid {
		t.Errorf("the previous view was replaced: %v", got)
	}
	if _, err := NewIssuer(t.Context(), st, serverKey("test"), Options{Issuer: testIssuer, Now: clk.Now, Logger: quiet}); err == nil {
		t.Error("NewIssuer on a tampered store succeeded")
	}
}

type tamperStore struct {
	store.SigningKeyStore
	swapJWK []byte
}

func (s *tamperStore) ListSigningKeys(ctx context.Context) ([]store.SigningKey, error) {
	keys, err := s.SigningKeyStore.ListSigningKeys(ctx)
	if s.swapJWK != nil {
		for n := range keys {
			keys[n].PublicJWK = s.swapJWK
		}
	}
	return keys, err
}

// TestKeySetUnknownKid: the in-process key set refuses unknown kids as
// ErrUnknownKey.
func TestKeySetUnknownKid(t *testing.T) {
	clk := &clock{now: t0}
	i := newIssuer(t, sqliteStore(t), clk)
	if _, err := i.KeySet().LookupKey(t.Context(), "nope", "ES256"); !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("LookupKey(unknown) = %v", err)
	}
	kid := jwksKids(t, i)[0]
	if _, err := i.KeySet().LookupKey(t.Context(), kid, "RS256"); !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("LookupKey(kid, wrong alg) = %v", err)
	}
}
