package identity

import (
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

const idp = "https://idp.example.com"

type provisionEnv struct {
	db  *sqlstore.DB
	svc *Service
	rec *recorder
	p   *Provisioner
}

func newProvisionEnv(t testing.TB) *provisionEnv {
	db := storetest.SQLite(t)
	rec := &recorder{}
	svc := New(db, rec)
	return &provisionEnv{db: db, svc: svc, rec: rec, p: NewProvisioner(svc, db)}
}

func types(events []audit.Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, e.Type)
	}
	return out
}

func TestProvisionCreatesOnceAndTouches(t *testing.T) {
	e := newProvisionEnv(t)
	ctx := t.Context()
	acct := ExternalAccount{Issuer: idp, Subject: "sub-1", Email: "Ann@Example.com", EmailVerified: true, Name: "Ann", Via: "external_jwt"}
	u, err := e.p.Provision(ctx, acct)
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if u.Email != "ann@example.com" || u.DisplayName != "Ann" || u.PasswordHash != "" {
		t.Errorf("provisioned user = %+v, want email ann@example.com, name Ann, no password", u)
	}
	evs := e.rec.take()
	if got := types(evs); len(got) != 1 || got[0] != TypeUserProvisioned {
		t.Fatalf("audit = %v, want [user.provisioned]", got)
	}
	if evs[0].UserID != u.ID || evs[0].Details["issuer"] != idp || evs[0].Details["subject"] != "sub-1" {
		t.Errorf("user.provisioned event = %+v", evs[0])
	}

	// The second login finds the link: same user, no new event; the
	// source's rename is taken over.
	acct.Name = "Ann B."
	again, err := e.p.Provision(ctx, acct)
	if err != nil || again.ID != u.ID {
		t.Fatalf("second Provision = %s, %v; want %s", again.ID, err, u.ID)
	}
	if again.DisplayName != "Ann B." {
		t.Errorf("display name = %q, want the source's new name", again.DisplayName)
	}
	if got := types(e.rec.take()); len(got) != 0 {
		t.Errorf("second login audited %v, want nothing", got)
	}
	link, err := e.db.GetIdentity(ctx, idp, "sub-1")
	if err != nil || link.UserID != u.ID || link.LastLoginAt.IsZero() || link.Name != "Ann B." {
		t.Errorf("identity = %+v, %v", link, err)
	}
}

func TestProvisionEmailLinkPolicy(t *testing.T) {
	tests := []struct {
		name      string
		verified  bool
		allowLink bool
		wantLink  bool
	}{
		{"verified and allowed: linked", true, true, true},
		{"unverified but allowed: new user", false, true, false},
		{"verified but not allowed: new user", true, false, false},
		{"unverified and not allowed: new user", false, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newProvisionEnv(t)
			ctx := t.Context()
			local, err := e.svc.Create(ctx, NewUser{Email: "bob@example.com", Name: "Bob", Password: "a long enough password"})
			if err != nil {
				t.Fatal(err)
			}
			e.rec.take()
			u, err := e.p.Provision(ctx, ExternalAccount{Issuer: idp, Subject: "bob-at-idp", Email: "BOB@example.com",
				EmailVerified: tc.verified, LinkByEmail: tc.allowLink})
			if err != nil {
				t.Fatalf("Provision: %v", err)
			}
			evs := e.rec.take()
			if tc.wantLink {
				if u.ID != local.ID {
					t.Fatalf("provisioned %s, want the existing user %s", u.ID, local.ID)
				}
				if got := types(evs); len(got) != 1 || got[0] != TypeIdentityLinked {
					t.Errorf("audit = %v, want [identity.linked]", got)
				}
				return
			}
			if u.ID == local.ID {
				t.Fatal("linked to the existing user against the policy")
			}
			// The new user never carries the address: unverified, or
			// verified but another user's.
			if u.Email != PlaceholderEmail(idp, "bob-at-idp") || !strings.HasSuffix(u.Email, "@"+PlaceholderEmailDomain) {
				t.Errorf("new user's email = %q, want the placeholder", u.Email)
			}
			if got := types(evs); len(got) != 1 || got[0] != TypeUserProvisioned {
				t.Errorf("audit = %v, want [user.provisioned]", got)
			}
			// The local user is untouched and still logs in.
			if _, err := e.svc.Login(ctx, "bob@example.com", "a long enough password", "198.51.100.7"); err != nil {
				t.Errorf("local login after provisioning: %v", err)
			}
		})
	}
}

// An unverified address is never stored as the user's email, even when
// nobody uses it: a later email-based link must not trust it.
func TestProvisionUnverifiedEmailNotStored(t *testing.T) {
	e := newProvisionEnv(t)
	u, err := e.p.Provision(t.Context(), ExternalAccount{Issuer: idp, Subject: "s", Email: "ceo@example.com", LinkByEmail: true})
	if err != nil {
		t.Fatal(err)
	}
	if u.Email == "ceo@example.com" {
		t.Fatal("unverified email stored as the user's email")
	}
	if _, err := e.db.GetUserByEmail(t.Context(), "ceo@example.com"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetUserByEmail(unverified) = %v, want ErrNotFound", err)
	}
}

// A source that vouches for a look-alike address (U+212A KELVIN SIGN for
// the "K") neither links to nor takes the plain address's user: the
// address does not normalise, so the account gets the placeholder.
func TestProvisionLookAlikeEmailDoesNotLink(t *testing.T) {
	e := newProvisionEnv(t)
	ctx := t.Context()
	kate, err := e.svc.Create(ctx, NewUser{Email: "kate@example.com", Name: "Kate", Password: "a long enough password"})
	if err != nil {
		t.Fatal(err)
	}
	u, err := e.p.Provision(ctx, ExternalAccount{Issuer: idp, Subject: "not-kate", Email: "\u212Aate@example.com", EmailVerified: true, LinkByEmail: true})
	if err != nil {
		t.Fatal(err)
	}
	if u.ID == kate.ID || u.Email != PlaceholderEmail(idp, "not-kate") {
		t.Errorf("provisioned %s with email %q; want a new user with the placeholder, not kate (%s)", u.ID, u.Email, kate.ID)
	}
}

// Twenty concurrent first requests of one account, on two provisioners
// sharing a database (two nodes), end with one user and one link.
func TestProvisionConcurrentFirstRequests(t *testing.T) {
	for _, tc := range []struct {
		name     string
		email    string
		verified bool
	}{
		{"no email", "", false},
		{"verified email", "dora@example.com", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newProvisionEnv(t)
			other := NewProvisioner(e.svc, e.db)
			var wg sync.WaitGroup
			ids := make([]string, 20)
			errs := make([]error, 20)
			for i := range ids {
				wg.Add(1)
				go func() {
					defer wg.Done()
					p := e.p
					if i%2 == 1 {
						p = other
					}
					u, err := p.Provision(t.Context(), ExternalAccount{Issuer: idp, Subject: "racer", Email: tc.email, EmailVerified: tc.verified, LinkByEmail: true})
					ids[i], errs[i] = u.ID, err
				}()
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if ids[i] != ids[0] {
					t.Fatalf("request %d got user %s, request 0 got %s", i, ids[i], ids[0])
				}
			}
			users, err := e.db.ListUsers(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != 1 {
				t.Errorf("%d users, want 1", len(users))
			}
			if n := len(types(e.rec.take())); n != 1 {
				t.Errorf("%d audit events, want one user.provisioned", n)
			}
		})
	}
}

func TestProvisionRefusesBadAccounts(t *testing.T) {
	e := newProvisionEnv(t)
	for name, a := range map[string]ExternalAccount{
		"no issuer":       {Subject: "s"},
		"no subject":      {Issuer: idp},
		"huge subject":    {Issuer: idp, Subject: strings.Repeat("s", 256)},
		"NUL in subject":  {Issuer: idp, Subject: "a\x00b"},
		"invalid UTF-8":   {Issuer: idp, Subject: "\xff"},
		"NUL in issuer":   {Issuer: idp + "\x00", Subject: "s"},
		"huge issuer URL": {Issuer: idp + "/" + strings.Repeat("x", 2048), Subject: "s"},
	} {
		if _, err := e.p.Provision(t.Context(), a); err == nil {
			t.Errorf("%s: provisioned", name)
		}
	}
	// Absurd profile values are dropped, not stored.
	u, err := e.p.Provision(t.Context(), ExternalAccount{Issuer: idp, Subject: "s", Email: "not an email", EmailVerified: true,
		Name: "evil\u202ename" + strings.Repeat("x", 300)})
	if err != nil {
		t.Fatal(err)
	}
	if u.DisplayName != "" || !strings.HasSuffix(u.Email, PlaceholderEmailDomain) {
		t.Errorf("user = %+v, want no name and the placeholder email", u)
	}
	if n := len(e.rec.take()); n != 1 {
		t.Errorf("%d audit events, want 1", n)
	}
}
