package identity

// Just-in-time provisioning of users who arrive with an external identity
// (a token from a trusted external issuer; later an upstream login). The
// external account, named by (issuer, subject), is linked to exactly one
// local user, so it gets an audit trail, keys and sessions like any other.
//
// Linking to an existing local user by email is the one dangerous step: a
// source that lets anyone claim any address would hand over that user's
// account. It happens only when the source says the email is verified AND
// the operator allowed it for that source. Otherwise a new user is made;
// its email is the source's address only when verified and free, and a
// reserved placeholder (…@external.invalid, RFC 2606) otherwise, so an
// unverified address never lands in the users table where a later
// email-based link could trust it.

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/store"
)

// Audit event types of provisioning.
const (
	// TypeUserProvisioned: a user was created for an external identity.
	TypeUserProvisioned = "user.provisioned"
	// TypeIdentityLinked: an external identity was linked to an existing
	// user (by verified email, where the source's policy allows it).
	TypeIdentityLinked = "identity.linked"
)

// PlaceholderEmailDomain is the domain of the emails given to provisioned
// users whose source did not vouch for an address (".invalid" is reserved
// and never deliverable, RFC 2606 §2).
const PlaceholderEmailDomain = "external.invalid"

// Limits on what a source may say about an account.
const (
	maxSubjectBytes = 255
	maxIssuerBytes  = 2048
)

// ExternalAccount is an account at an external identity source, as the
// source describes it.
type ExternalAccount struct {
	Issuer        string // the source's issuer URL, byte for byte
	Subject       string // its stable account id ("sub")
	Email         string // optional
	EmailVerified bool   // the source says it verified Email
	Name          string // optional display name
	// LinkByEmail: the operator allows linking this source's accounts to
	// existing users with the same (verified) email.
	LinkByEmail bool
	// Via names the mechanism for audit events ("external_jwt",
	// "introspection", …).
	Via string
}

// Provisioner creates or updates the local users of external accounts.
// It is safe for concurrent use; concurrent first requests of one account
// (also on several nodes sharing the store) end with one user.
type Provisioner struct {
	users *Service
	ids   store.IdentityStore

	mu     sync.Mutex
	flight map[string]*provisionCall
}

type provisionCall struct {
	done chan struct{}
	u    store.User
	err  error
}

// NewProvisioner returns a provisioner storing users through s and links
// in ids (usually the same database).
func NewProvisioner(s *Service, ids store.IdentityStore) *Provisioner {
	return &Provisioner{users: s, ids: ids, flight: map[string]*provisionCall{}}
}

// Provision returns the local user of the external account, creating the
// user (user.provisioned) or linking an existing one by verified email
// (identity.linked) on first sight, and recording the login. A disabled
// user is returned as is: refusing it is the caller's business.
func (p *Provisioner) Provision(ctx context.Context, a ExternalAccount) (store.User, error) {
	if err := checkAccount(a); err != nil {
		return store.User{}, err
	}
	// One call per account per process at a time: concurrent first
	// requests share one provisioning instead of racing in the database.
	key := a.Issuer + "\x00" + a.Subject
	p.mu.Lock()
	if c, ok := p.flight[key]; ok {
		p.mu.Unlock()
		select {
		case <-c.done:
			return c.u, c.err
		case <-ctx.Done():
			return store.User{}, ctx.Err()
		}
	}
	c := &provisionCall{done: make(chan struct{})}
	p.flight[key] = c
	p.mu.Unlock()
	// Detached from the caller's cancellation: the waiters share the result.
	c.u, c.err = p.provision(context.WithoutCancel(ctx), a)
	p.mu.Lock()
	delete(p.flight, key)
	p.mu.Unlock()
	close(c.done)
	return c.u, c.err
}

func checkAccount(a ExternalAccount) error {
	switch {
	case a.Issuer == "" || len(a.Issuer) > maxIssuerBytes || !utf8.ValidString(a.Issuer) || strings.ContainsRune(a.Issuer, 0):
		return &ValidationError{"issuer", "must be 1 to 2048 bytes of text"}
	case a.Subject == "" || len(a.Subject) > maxSubjectBytes || !utf8.ValidString(a.Subject) || strings.ContainsRune(a.Subject, 0):
		return &ValidationError{"sub", "must be 1 to 255 bytes of text"}
	}
	return nil
}

func (p *Provisioner) provision(ctx context.Context, a ExternalAccount) (store.User, error) {
	email, emailErr := NormalizeEmail(a.Email)
	if emailErr != nil {
		email = "" // an unusable address is as good as none
	}
	name, err := CheckDisplayName(a.Name)
	if err != nil {
		name = ""
	}
	verified := a.EmailVerified && email != ""
	seen := store.UserIdentity{
		Issuer: a.Issuer, Subject: a.Subject, Email: email, EmailVerified: verified, Name: name,
		CreatedAt: p.users.now(), LastLoginAt: p.users.now(),
	}

	// Two rounds: a conflict means another request (or node) linked the
	// account meanwhile, and the second round finds its link.
	for range 2 {
		if u, ok, err := p.existing(ctx, seen); ok || err != nil {
			return u, err
		}
		if verified && a.LinkByEmail {
			u, err := p.users.st.GetUserByEmail(ctx, email)
			switch {
			case err == nil:
				seen.UserID = u.ID
				err = p.ids.LinkIdentity(ctx, seen)
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				if err != nil {
					return store.User{}, err
				}
				p.users.audit.Record(ctx, audit.Event{
					Type: TypeIdentityLinked, Outcome: store.OutcomeAllow, UserID: u.ID,
					Details: map[string]any{"issuer": a.Issuer, "subject": a.Subject, "email": email, "by": "verified_email", "via": a.Via},
				})
				return u, nil
			case !errors.Is(err, store.ErrNotFound):
				return store.User{}, err
			}
		}
		u, err := p.create(ctx, a, seen)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		return u, err
	}
	return store.User{}, fmt.Errorf("provisioning %s at %s: %w: the account was linked and unlinked concurrently", a.Subject, a.Issuer, store.ErrConflict)
}

// existing returns the user already linked to the account, recording the
// login and taking over a changed display name.
func (p *Provisioner) existing(ctx context.Context, seen store.UserIdentity) (store.User, bool, error) {
	link, err := p.ids.GetIdentity(ctx, seen.Issuer, seen.Subject)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, nil
	}
	if err != nil {
		return store.User{}, false, err
	}
	if err := p.ids.TouchIdentity(ctx, seen); err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.User{}, false, err
	}
	u, err := p.users.st.GetUser(ctx, link.UserID)
	if err != nil {
		return store.User{}, false, err
	}
	if seen.Name != "" && seen.Name != u.DisplayName && link.Name != seen.Name {
		// The source renamed the account: follow it. (A name an operator
		// set locally is kept until the source's name changes again.)
		u, err = p.users.st.UpdateUser(ctx, u.ID, func(cur store.User) (store.User, error) {
			cur.DisplayName = seen.Name
			cur.UpdatedAt = p.users.now()
			return cur, nil
		})
		if err != nil {
			return store.User{}, false, err
		}
		for _, fn := range p.users.onUserChanged {
			fn(u.ID)
		}
	}
	return u, true, nil
}

// create makes a new user linked to the account. The source's email is
// used when verified and free; otherwise the placeholder.
func (p *Provisioner) create(ctx context.Context, a ExternalAccount, seen store.UserIdentity) (store.User, error) {
	now := p.users.now()
	emails := []string{PlaceholderEmail(a.Issuer, a.Subject)}
	if seen.EmailVerified {
		emails = []string{seen.Email, emails[0]}
	}
	var err error
	for i, email := range emails {
		u := store.User{ID: store.NewID("usr"), Email: email, DisplayName: seen.Name, CreatedAt: now, UpdatedAt: now}
		link := seen
		link.UserID = u.ID
		err = p.ids.CreateUserWithIdentity(ctx, u, link)
		if err == nil {
			details := map[string]any{"issuer": a.Issuer, "subject": a.Subject, "email": u.Email, "email_verified": seen.EmailVerified, "via": a.Via}
			if i > 0 {
				details["email_in_use"] = true // the verified address belongs to another user, and linking is off
			}
			p.users.audit.Record(ctx, audit.Event{Type: TypeUserProvisioned, Outcome: store.OutcomeAllow, UserID: u.ID, Details: details})
			return u, nil
		}
		if !errors.Is(err, store.ErrConflict) {
			return store.User{}, err
		}
		// A conflict: the account was linked meanwhile (the caller looks
		// again), or the verified email is another user's (try the
		// placeholder).
		if _, gerr := p.ids.GetIdentity(ctx, a.Issuer, a.Subject); gerr == nil {
			return store.User{}, err
		}
	}
	return store.User{}, err
}

// PlaceholderEmail is the email of a provisioned user whose source did not
// vouch for an address: stable per account, unique, never deliverable.
func PlaceholderEmail(issuer, subject string) string {
	sum := sha256.Sum256([]byte(issuer + "\x00" + subject))
	return fmt.Sprintf("ext-%x@%s", sum[:12], PlaceholderEmailDomain)
}
