package conformance

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

// IdentityBackend is a store that also keeps external identities.
type IdentityBackend = store.Store

// RunIdentities runs the external-identity tests (store.IdentityStore),
// each on a fresh store from newStore.
func RunIdentities(t *testing.T, newStore func(t *testing.T) IdentityBackend) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s IdentityBackend)
	}{
		{"IdentityCreateGetList", testIdentityCreateGetList},
		{"IdentityCreateConflicts", testIdentityCreateConflicts},
		{"IdentityLink", testIdentityLink},
		{"IdentityTouch", testIdentityTouch},
		{"IdentityInvalid", testIdentityInvalid},
		{"IdentityCreateConcurrent", testIdentityCreateConcurrent},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

const testIssuer = "https://idp.example.com/realms/main"

func identityMS(id store.UserIdentity) store.UserIdentity {
	id.CreatedAt, id.LastLoginAt = ms(id.CreatedAt), ms(id.LastLoginAt)
	return id
}

func newExternalUser(email string) store.User {
	return store.User{ID: store.NewID("usr"), Email: email, DisplayName: "Ext " + email, CreatedAt: at(0), UpdatedAt: at(0)}
}

func testIdentityCreateGetList(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	u := newExternalUser("ext@example.com")
	id := store.UserIdentity{
		Issuer: testIssuer, Subject: "f3b1c2d4-0000-4000-8000-000000000001", UserID: u.ID,
		Email: "ext@example.com", EmailVerified: true, Name: "Zoë \"; DROP TABLE users; --",
		CreatedAt: at(0), LastLoginAt: at(time.Second),
	}
	if err := s.CreateUserWithIdentity(ctx, u, id); err != nil {
		t.Fatalf("CreateUserWithIdentity: %v", err)
	}
	gotUser, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if d := diff(userMS(u), gotUser); d != "" {
		t.Errorf("user mismatch (-want +got):\n%s", d)
	}
	got, err := s.GetIdentity(ctx, id.Issuer, id.Subject)
	if err != nil {
		t.Fatalf("GetIdentity: %v", err)
	}
	if d := diff(identityMS(id), got); d != "" {
		t.Errorf("GetIdentity mismatch (-want +got):\n%s", d)
	}
	// The issuer is compared byte for byte: a trailing slash or another
	// letter case is another issuer.
	for _, iss := range []string{testIssuer + "/", strings.ToUpper(testIssuer)} {
		if _, err := s.GetIdentity(ctx, iss, id.Subject); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetIdentity(%q) = %v, want ErrNotFound", iss, err)
		}
	}
	if _, err := s.GetIdentity(ctx, id.Issuer, "other"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetIdentity(unknown subject) = %v, want ErrNotFound", err)
	}

	// A second identity for the same user (another issuer), and one for
	// another user: ListIdentities returns the user's own, oldest first.
	second := store.UserIdentity{Issuer: "https://other.example.com", Subject: id.Subject, UserID: u.ID, CreatedAt: at(time.Hour)}
	if err := s.LinkIdentity(ctx, second); err != nil {
		t.Fatalf("LinkIdentity(second): %v", err)
	}
	v := newExternalUser("someone@example.com")
	if err := s.CreateUserWithIdentity(ctx, v, store.UserIdentity{Issuer: testIssuer, Subject: "someone", UserID: v.ID}); err != nil {
		t.Fatalf("CreateUserWithIdentity(other user): %v", err)
	}
	list, err := s.ListIdentities(ctx, u.ID)
	if err != nil {
		t.Fatalf("ListIdentities: %v", err)
	}
	if d := diff([]store.UserIdentity{identityMS(id), identityMS(second)}, list); d != "" {
		t.Errorf("ListIdentities mismatch (-want +got):\n%s", d)
	}
	if list, err := s.ListIdentities(ctx, "usr_nobody"); err != nil || len(list) != 0 {
		t.Errorf("ListIdentities(unknown user) = %v, %v; want none", list, err)
	}

	// ListAllIdentities: every link, grouped by user, each user's oldest
	// first.
	all, err := s.ListAllIdentities(ctx)
	if err != nil {
		t.Fatalf("ListAllIdentities: %v", err)
	}
	theirs, err := s.GetIdentity(ctx, testIssuer, "someone") // CreatedAt set by the store
	if err != nil {
		t.Fatalf("GetIdentity(someone): %v", err)
	}
	want := []store.UserIdentity{identityMS(id), identityMS(second), theirs}
	if v.ID < u.ID {
		want = []store.UserIdentity{theirs, identityMS(id), identityMS(second)}
	}
	if d := diff(want, all); d != "" {
		t.Errorf("ListAllIdentities mismatch (-want +got):\n%s", d)
	}
}

func testIdentityCreateConflicts(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	u := newExternalUser("first@example.com")
	id := store.UserIdentity{Issuer: testIssuer, Subject: "sub-1", UserID: u.ID}
	if err := s.CreateUserWithIdentity(ctx, u, id); err != nil {
		t.Fatalf("CreateUserWithIdentity: %v", err)
	}
	users := func() int {
		list, err := s.ListUsers(ctx)
		if err != nil {
			t.Fatalf("ListUsers: %v", err)
		}
		return len(list)
	}
	before := users()

	// The same identity for a new user: conflict, and the new user is not
	// left behind.
	v := newExternalUser("second@example.com")
	if err := s.CreateUserWithIdentity(ctx, v, store.UserIdentity{Issuer: testIssuer, Subject: "sub-1", UserID: v.ID}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUserWithIdentity(linked identity) = %v, want ErrConflict", err)
	}
	if _, err := s.GetUser(ctx, v.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user of a refused identity was stored: %v", err)
	}
	// A taken email (any letter case): conflict, and no identity is left.
	w := newExternalUser("FIRST@example.com")
	if err := s.CreateUserWithIdentity(ctx, w, store.UserIdentity{Issuer: testIssuer, Subject: "sub-2", UserID: w.ID}); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateUserWithIdentity(taken email) = %v, want ErrConflict", err)
	}
	if _, err := s.GetIdentity(ctx, testIssuer, "sub-2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("identity of a refused user was stored: %v", err)
	}
	if n := users(); n != before {
		t.Errorf("%d users after refused creations, want %d", n, before)
	}
	// The identity must name the new user.
	x := newExternalUser("third@example.com")
	if err := s.CreateUserWithIdentity(ctx, x, store.UserIdentity{Issuer: testIssuer, Subject: "sub-3", UserID: u.ID}); err == nil {
		t.Error("CreateUserWithIdentity accepted an identity naming another user")
	}
}

func testIdentityLink(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	u := mustUser(t, s, "local@example.com")
	id := store.UserIdentity{Issuer: testIssuer, Subject: "sub-link", UserID: u.ID, Email: "local@example.com", EmailVerified: true, CreatedAt: at(0)}
	if err := s.LinkIdentity(ctx, id); err != nil {
		t.Fatalf("LinkIdentity: %v", err)
	}
	got, err := s.GetIdentity(ctx, testIssuer, "sub-link")
	if err != nil || got.UserID != u.ID {
		t.Fatalf("GetIdentity = %+v, %v; want linked to %s", got, err, u.ID)
	}
	// Linked already (to this or another user): conflict.
	v := mustUser(t, s, "other@example.com")
	for _, uid := range []string{u.ID, v.ID} {
		again := id
		again.UserID = uid
		if err := s.LinkIdentity(ctx, again); !errors.Is(err, store.ErrConflict) {
			t.Errorf("LinkIdentity(linked identity to %s) = %v, want ErrConflict", uid, err)
		}
	}
	if got, _ := s.GetIdentity(ctx, testIssuer, "sub-link"); got.UserID != u.ID {
		t.Errorf("a refused link moved the identity to %s", got.UserID)
	}
	// An unknown user: not found.
	if err := s.LinkIdentity(ctx, store.UserIdentity{Issuer: testIssuer, Subject: "sub-x", UserID: "usr_nobody"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("LinkIdentity(unknown user) = %v, want ErrNotFound", err)
	}
}

func testIdentityTouch(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	u := newExternalUser("touch@example.com")
	id := store.UserIdentity{Issuer: testIssuer, Subject: "sub-touch", UserID: u.ID, Email: "old@example.com", Name: "Old", CreatedAt: at(0)}
	if err := s.CreateUserWithIdentity(ctx, u, id); err != nil {
		t.Fatal(err)
	}
	touch := func(email string, verified bool, name string, when time.Time) {
		t.Helper()
		err := s.TouchIdentity(ctx, store.UserIdentity{Issuer: testIssuer, Subject: "sub-touch", UserID: "ignored",
			Email: email, EmailVerified: verified, Name: name, LastLoginAt: when, CreatedAt: at(99 * time.Hour)})
		if err != nil {
			t.Fatalf("TouchIdentity: %v", err)
		}
	}
	touch("new@example.com", true, "New", at(2*time.Hour))
	touch("newer@example.com", false, "Newer", at(time.Hour)) // older login time: kept at 2h
	got, err := s.GetIdentity(ctx, testIssuer, "sub-touch")
	if err != nil {
		t.Fatal(err)
	}
	want := identityMS(id)
	want.Email, want.EmailVerified, want.Name, want.LastLoginAt = "newer@example.com", false, "Newer", ms(at(2*time.Hour))
	if d := diff(want, got); d != "" {
		t.Errorf("after touches (-want +got):\n%s", d)
	}
	if err := s.TouchIdentity(ctx, store.UserIdentity{Issuer: testIssuer, Subject: "nobody", LastLoginAt: at(0)}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("TouchIdentity(unknown) = %v, want ErrNotFound", err)
	}
}

func testIdentityInvalid(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	u := mustUser(t, s, "valid@example.com")
	for name, id := range map[string]store.UserIdentity{
		"empty issuer":  {Subject: "s", UserID: u.ID},
		"empty subject": {Issuer: testIssuer, UserID: u.ID},
		"empty user":    {Issuer: testIssuer, Subject: "s"},
		"NUL subject":   {Issuer: testIssuer, Subject: "a\x00b", UserID: u.ID},
		"bad UTF-8":     {Issuer: testIssuer, Subject: "s", UserID: u.ID, Name: "\xff\xfe"},
	} {
		if err := s.LinkIdentity(ctx, id); err == nil || errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrNotFound) {
			t.Errorf("LinkIdentity(%s) = %v, want a validation error", name, err)
		}
	}
	// Lookups of text no backend could store find nothing.
	if _, err := s.GetIdentity(ctx, testIssuer, "a\x00b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetIdentity(NUL) = %v, want ErrNotFound", err)
	}
}

// testIdentityCreateConcurrent: many nodes provisioning the same external
// account at once end with exactly one user and one link; every loser gets
// ErrConflict.
func testIdentityCreateConcurrent(t *testing.T, s IdentityBackend) {
	ctx := t.Context()
	const n = 20
	var (
		wg        sync.WaitGroup
		wins      atomic.Int32
		conflicts atomic.Int32
		others    = make(chan error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each racer picks its own email (as with an email-less
			// account), so only the identity key can stop it.
			u := newExternalUser(fmt.Sprintf("racer%d@example.com", i))
			err := s.CreateUserWithIdentity(ctx, u, store.UserIdentity{Issuer: testIssuer, Subject: "sub-race", UserID: u.ID})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, store.ErrConflict):
				conflicts.Add(1)
			default:
				others <- err
			}
		}()
	}
	wg.Wait()
	close(others)
	for err := range others {
		t.Errorf("unexpected error: %v", err)
	}
	if wins.Load() != 1 || conflicts.Load() != n-1 {
		t.Errorf("%d creations won and %d conflicted, want 1 and %d", wins.Load(), conflicts.Load(), n-1)
	}
	list, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 {
		t.Errorf("%d users exist, want 1", len(list))
	}
}
