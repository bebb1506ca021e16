package conformance

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
)

func testUserCRUD(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := store.User{
		ID:           store.NewID("usr"),
		Email:        "zoe@example.com",
		DisplayName:  "Zoë O'Brien \"; DROP TABLE users; --",
		Roles:        []string{"admin", "user"},
		PasswordHash: "$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHQ$aGFzaGhhc2g",
		Disabled:     true,
		CreatedAt:    at(0),
		UpdatedAt:    at(time.Hour),
	}
	if err := s.CreateUser(ctx, u); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	want := userMS(u)

	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if d := diff(want, got); d != "" {
		t.Errorf("GetUser mismatch (-want +got):\n%s", d)
	}
	got, err = s.GetUserByEmail(ctx, u.Email)
	if err != nil {
		t.Fatalf("GetUserByEmail: %v", err)
	}
	if d := diff(want, got); d != "" {
		t.Errorf("GetUserByEmail mismatch (-want +got):\n%s", d)
	}
	// Look-ups ignore ASCII case.
	for _, look := range []string{"Zoe@example.com", "ZOE@EXAMPLE.COM"} {
		if _, err := s.GetUserByEmail(ctx, look); err != nil {
			t.Errorf("GetUserByEmail(%q) (case only): %v", look, err)
		}
	}

	// A user with no roles and no password.
	bare := store.User{ID: store.NewID("usr"), Email: "adam@example.com", CreatedAt: at(0), UpdatedAt: at(0)}
	if err := s.CreateUser(ctx, bare); err != nil {
		t.Fatalf("CreateUser(bare): %v", err)
	}
	got, err = s.GetUser(ctx, bare.ID)
	if err != nil {
		t.Fatalf("GetUser(bare): %v", err)
	}
	if d := diff(userMS(bare), got); d != "" {
		t.Errorf("GetUser(bare) mismatch (-want +got):\n%s", d)
	}

	list, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if d := diff([]store.User{userMS(bare), want}, list); d != "" {
		t.Errorf("ListUsers (ordered by email) mismatch (-want +got):\n%s", d)
	}
	// A look-alike of a real address (U+212A KELVIN SIGN is lower-cased to
	// "k") is another address.
	if err := s.CreateUser(ctx, store.User{ID: store.NewID("usr"), Email: "kim@example.com", CreatedAt: at(0), UpdatedAt: at(0)}); err != nil {
		t.Fatalf("CreateUser(kim): %v", err)
	}
	for _, look := range []string{"\u212Aim@example.com", "kim@example.\u212Aom"} {
		if _, err := s.GetUserByEmail(ctx, look); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUserByEmail(%q) err = %v, want ErrNotFound (a look-alike is another address)", look, err)
		}
	}
}

func testUserEmailCaseInsensitive(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "Alice@Example.COM")
	for _, email := range []string{"alice@example.com", "ALICE@EXAMPLE.COM", "Alice@Example.COM"} {
		got, err := s.GetUserByEmail(ctx, email)
		if err != nil {
			t.Fatalf("GetUserByEmail(%q): %v", email, err)
		}
		if got.ID != u.ID {
			t.Errorf("GetUserByEmail(%q) = %s, want %s", email, got.ID, u.ID)
		}
		if got.Email != "alice@example.com" {
			t.Errorf("stored email = %q, want it normalised to lower case", got.Email)
		}
	}
	if _, err := s.GetUserByEmail(ctx, "alice@example.co"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByEmail(prefix) err = %v, want ErrNotFound", err)
	}
	// No pattern matching: '%' and '_' are literal.
	for _, email := range []string{"%", "alice@example.co_", "%@example.com"} {
		if _, err := s.GetUserByEmail(ctx, email); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("GetUserByEmail(%q) err = %v, want ErrNotFound", email, err)
		}
	}
}

func testUserConflict(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "bob@example.com")

	dupEmail := store.User{ID: store.NewID("usr"), Email: "BOB@example.com", CreatedAt: at(0), UpdatedAt: at(0)}
	if err := s.CreateUser(ctx, dupEmail); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(same email, other case) err = %v, want ErrConflict", err)
	}
	dupID := store.User{ID: u.ID, Email: "other@example.com", CreatedAt: at(0), UpdatedAt: at(0)}
	if err := s.CreateUser(ctx, dupID); !errors.Is(err, store.ErrConflict) {
		t.Errorf("CreateUser(same id) err = %v, want ErrConflict", err)
	}
	list, err := s.ListUsers(ctx)
	if err != nil {
		t.Fatalf("ListUsers: %v", err)
	}
	if d := diff([]store.User{u}, list); d != "" {
		t.Errorf("a conflicting create changed the users (-want +got):\n%s", d)
	}
}

func testUserNotFound(t *testing.T, s store.Store) {
	ctx := t.Context()
	mustUser(t, s, "carol@example.com")
	if _, err := s.GetUser(ctx, store.NewID("usr")); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser(unknown) err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetUser(ctx, ""); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUser(\"\") err = %v, want ErrNotFound", err)
	}
	if _, err := s.GetUserByEmail(ctx, "nobody@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByEmail(unknown) err = %v, want ErrNotFound", err)
	}
	called := false
	_, err := s.UpdateUser(ctx, store.NewID("usr"), func(u store.User) (store.User, error) {
		called = true
		return u, nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("UpdateUser(unknown) err = %v, want ErrNotFound", err)
	}
	if called {
		t.Error("UpdateUser(unknown) called the updater")
	}
	users, err := s.ListUsers(ctx)
	if err != nil || len(users) != 1 {
		t.Errorf("ListUsers = %d users, %v; want 1", len(users), err)
	}
}

func testUserInvalidRoles(t *testing.T, s store.Store) {
	ctx := t.Context()
	// Roles are stored as space-separated tokens; one with white space
	// could not be read back and must be refused, not silently split.
	for _, roles := range [][]string{{"two words"}, {""}, {"tab\there"}} {
		u := store.User{ID: store.NewID("usr"), Email: store.NewID("e") + "@example.com", Roles: roles, CreatedAt: at(0), UpdatedAt: at(0)}
		if err := s.CreateUser(ctx, u); err == nil {
			t.Errorf("CreateUser(roles %q) succeeded, want an error", roles)
		}
	}
}

func testUpdateUser(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "dave@example.com")
	var seen store.User
	got, err := s.UpdateUser(ctx, u.ID, func(cur store.User) (store.User, error) {
		seen = cur
		cur.ID = "usr_hijack"          // ignored
		cur.CreatedAt = at(-time.Hour) // ignored
		cur.Email = "Dave.New@Example.com"
		cur.DisplayName = "Dave ☕"
		cur.Roles = []string{"admin"}
		cur.PasswordHash = "$argon2id$new"
		cur.Disabled = true
		cur.UpdatedAt = at(2 * time.Hour)
		return cur, nil
	})
	if err != nil {
		t.Fatalf("UpdateUser: %v", err)
	}
	if d := diff(u, seen); d != "" {
		t.Errorf("updater saw (-want +got):\n%s", d)
	}
	want := u
	want.Email = "dave.new@example.com"
	want.DisplayName = "Dave ☕"
	want.Roles = []string{"admin"}
	want.PasswordHash = "$argon2id$new"
	want.Disabled = true
	want.UpdatedAt = ms(at(2 * time.Hour))
	if d := diff(want, got); d != "" {
		t.Errorf("UpdateUser result (-want +got):\n%s", d)
	}
	stored, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	if d := diff(want, stored); d != "" {
		t.Errorf("stored after UpdateUser (-want +got):\n%s", d)
	}
	if _, err := s.GetUserByEmail(ctx, "dave@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("old email still resolves: %v", err)
	}
	if _, err := s.GetUser(ctx, "usr_hijack"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("updater changed the id: %v", err)
	}
}

func testUpdateUserErrors(t *testing.T, s store.Store) {
	ctx := t.Context()
	a := mustUser(t, s, "erin@example.com")
	b := mustUser(t, s, "frank@example.com")

	// An updater error is returned as is and nothing is written.
	boom := errors.New("boom")
	_, err := s.UpdateUser(ctx, a.ID, func(u store.User) (store.User, error) {
		u.DisplayName = "changed"
		return u, boom
	})
	if err != boom {
		t.Errorf("UpdateUser(updater error) err = %v, want the updater's error as is", err)
	}

	// Taking another user's email (in any case) conflicts and writes nothing.
	_, err = s.UpdateUser(ctx, a.ID, func(u store.User) (store.User, error) {
		u.Email = "FRANK@example.com"
		u.DisplayName = "changed"
		return u, nil
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("UpdateUser(taken email) err = %v, want ErrConflict", err)
	}
	for _, want := range []store.User{a, b} {
		got, err := s.GetUser(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetUser: %v", err)
		}
		if d := diff(want, got); d != "" {
			t.Errorf("failed UpdateUser changed %s (-want +got):\n%s", want.Email, d)
		}
	}
}

func testUpdateUserConcurrent(t *testing.T, s store.Store) {
	ctx := t.Context()
	u := mustUser(t, s, "grace@example.com")
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateUser(ctx, u.ID, func(cur store.User) (store.User, error) {
				cur.Roles = append(cur.Roles, fmt.Sprintf("r%02d", i))
				return cur, nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent UpdateUser: %v", err)
		}
	}
	got, err := s.GetUser(ctx, u.ID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	want := []string{"user"}
	for i := range n {
		want = append(want, fmt.Sprintf("r%02d", i))
	}
	roles := slices.Clone(got.Roles)
	slices.Sort(roles)
	slices.Sort(want)
	if d := diff(want, roles); d != "" {
		t.Errorf("lost updates: roles after %d concurrent updates (-want +got):\n%s", n, d)
	}
}
