// Package session manages browser login sessions: a random secret in a
// cookie, only its SHA-256 in the sessions table, idle and absolute
// expiry, per-user listing and revocation, and the cleaner that deletes
// what has been dead longer than the retention period.
//
// Ending a session (logout, revocation, expiry, password change, disable)
// revokes its session keys in the same store transaction (see
// store.SessionStore), so the MCP credential of a browser session never
// outlives it.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
	"github.com/mcpgate/mcpgate/internal/store"
)

// ErrNoSession: the request carries no usable session (no cookie, a
// malformed, forged or unknown one, or one that expired or was revoked, or
// whose user is disabled). Callers answer "please log in"; the details are
// not theirs to know.
var ErrNoSession = errors.New("no valid session")

// Cookie names. The __Host- prefix (RFC 6265bis §4.1.3.2) makes browsers
// accept the cookie only with Secure, Path=/ and no Domain, from a secure
// origin: it cannot be set by a sibling subdomain or over plain http.
// Browsers refuse Secure cookies from http:// origins other than
// localhost, so for a plain-http public URL on loopback (local
// development) the cookie is called CookieNameInsecure and sent without
// Secure.
const (
	CookieNameSecure   = "__Host-mcpgate_session"
	CookieNameInsecure = "mcpgate_session"
)

// Defaults for Options.
const (
	DefaultIdleTimeout   = 24 * time.Hour
	DefaultLifetime      = 30 * 24 * time.Hour
	DefaultTouchInterval = time.Minute
	// CleanBatch is how many rows the cleaner handles per statement.
	CleanBatch = 500
)

// secretLen is the number of random bytes in a cookie secret.
const secretLen = 32

// Options configure a Manager. Zero values select the defaults.
type Options struct {
	IdleTimeout   time.Duration // a session unused this long ends; default 24h
	Lifetime      time.Duration // absolute lifetime from login; default 30 days
	TouchInterval time.Duration // LastSeenAt is written at most this often; default 1m
	Secure        bool          // HTTPS: __Host- cookie with Secure (false only for plain-http loopback)
	Now           func() time.Time
	Logger        *slog.Logger
}

// Current is the session of a request.
type Current struct {
	Session store.Session
	User    store.User
	// Secret is the cookie secret (base64url). It is a credential: use it
	// only to derive the session's MCP key (apikeys.Service.SessionKey),
	// never log or show it.
	Secret string
}

// Manager creates, reads and ends sessions. Safe for concurrent use.
type Manager struct {
	st     store.Store
	rec    audit.Recorder
	opts   Options
	onKeys []func(keys []store.APIKey)
}

// New returns a Manager. st and rec must not be nil.
func New(st store.Store, rec audit.Recorder, opts Options) *Manager {
	if st == nil || rec == nil {
		panic("session.New: nil store or audit recorder")
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultLifetime
	}
	if opts.TouchInterval <= 0 {
		opts.TouchInterval = DefaultTouchInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Manager{st: st, rec: rec, opts: opts}
}

// OnKeysRevoked registers fn to run with the session keys a revocation
// revoked (so the key verification cache of this process forgets them at
// once: wire apikeys.Service.Evict). Call it before serving.
func (m *Manager) OnKeysRevoked(fn func(keys []store.APIKey)) {
	m.onKeys = append(m.onKeys, fn)
}

// CookieName is the name of the session cookie.
func (m *Manager) CookieName() string {
	if m.opts.Secure {
		return CookieNameSecure
	}
	return CookieNameInsecure
}

// IdleTimeout is the configured idle timeout.
func (m *Manager) IdleTimeout() time.Duration { return m.opts.IdleTimeout }

// Lifetime is the configured absolute lifetime.
func (m *Manager) Lifetime() time.Duration { return m.opts.Lifetime }

// Start logs u in: it creates a NEW session (a fresh random secret on every
// login, so a session id planted before login is worthless: no fixation),
// sets the cookie, ends the session the request came with (if any) and
// audits session.created. The caller has checked the credentials.
func (m *Manager) Start(ctx context.Context, w http.ResponseWriter, r *http.Request, u store.User) (store.Session, error) {
	return m.StartWithClaims(ctx, w, r, u, nil)
}

// StartWithClaims is Start for a login whose source vouched for custom
// claims (bring-your-own-login): they are kept with the session (JSON) and
// land in the principal of requests made with its cookie.
func (m *Manager) StartWithClaims(ctx context.Context, w http.ResponseWriter, r *http.Request, u store.User, claims map[string]any) (store.Session, error) {
	var claimsJSON string
	if len(claims) > 0 {
		b, err := json.Marshal(claims)
		if err != nil {
			return store.Session{}, fmt.Errorf("session: claims: %w", err)
		}
		claimsJSON = string(b)
	}
	if u.ID == "" || u.Disabled {
		return store.Session{}, errors.New("session: cannot start a session for a missing or disabled user")
	}
	var raw [secretLen]byte
	rand.Read(raw[:]) // crypto/rand.Read never fails (Go 1.24+)
	secret := base64.RawURLEncoding.EncodeToString(raw[:])
	h := sha256.Sum256(raw[:])
	now := m.opts.Now()
	info := httpx.InfoFrom(ctx)
	if info.ClientIP == "" {
		info.ClientIP = httpx.ClientIP(r)
	}
	if info.UserAgent == "" {
		info.UserAgent = httpx.UserAgent(r)
	}
	s := store.Session{
		ID:         store.NewID("ses"),
		UserID:     u.ID,
		Hash:       h[:],
		CreatedAt:  toMillis(now),
		LastSeenAt: toMillis(now),
		ExpiresAt:  toMillis(now.Add(m.opts.Lifetime)),
		IP:         info.ClientIP,
		UserAgent:  info.UserAgent,
		Claims:     claimsJSON,
	}
	// The session the browser had before this login ends now.
	if old, ok := m.cookieHash(r); ok {
		if prev, _, err := m.st.LookupSession(ctx, old[:]); err == nil {
			if _, err := m.revoke(ctx, prev, audit.TypeSessionRevoked, "replaced_by_login"); err != nil {
				return store.Session{}, err
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return store.Session{}, fmt.Errorf("session: start: %w", err)
		}
	}
	if err := m.st.CreateSession(ctx, s); err != nil {
		return store.Session{}, fmt.Errorf("session: start: %w", err)
	}
	http.SetCookie(w, m.cookie(secret, s.ExpiresAt))
	m.rec.Record(ctx, audit.Event{
		Time: now, Type: audit.TypeSessionCreated, Outcome: store.OutcomeAllow,
		UserID: u.ID, CredentialID: s.ID,
		Details: map[string]any{"expires_at": s.ExpiresAt.Format(time.RFC3339Nano)},
	})
	return s, nil
}

// cookie builds the session cookie carrying secret until expires.
func (m *Manager) cookie(secret string, expires time.Time) *http.Cookie {
	return &http.Cookie{
		Name:     m.CookieName(),
		Value:    secret,
		Path:     "/",
		Expires:  expires,
		Secure:   m.opts.Secure,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	}
}

// clearCookie tells the browser to drop the session cookie.
func (m *Manager) clearCookie(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{
		Name: m.CookieName(), Value: "", Path: "/", MaxAge: -1, Expires: time.Unix(0, 0),
		Secure: m.opts.Secure, HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
}

// cookieSecret returns the well-formed secret in the request's cookie.
func (m *Manager) cookieSecret(r *http.Request) (secret string, raw [secretLen]byte, ok bool) {
	c, err := r.Cookie(m.CookieName())
	if err != nil || len(c.Value) != base64.RawURLEncoding.EncodedLen(secretLen) {
		return "", raw, false
	}
	n, err := base64.RawURLEncoding.Strict().Decode(raw[:], []byte(c.Value))
	if err != nil || n != secretLen {
		return "", raw, false
	}
	return c.Value, raw, true
}

// cookieHash returns the SHA-256 of the request's cookie secret.
func (m *Manager) cookieHash(r *http.Request) ([32]byte, bool) {
	_, raw, ok := m.cookieSecret(r)
	if !ok {
		return [32]byte{}, false
	}
	return sha256.Sum256(raw[:]), true
}

// Current returns the request's live session and its user, or ErrNoSession.
// Any other error is a storage failure (answer 503, do not log the user
// out). A session found dead (idle or past its lifetime) is ended here,
// with its keys, and session.expired is audited once. LastSeenAt is
// written at most once per TouchInterval.
func (m *Manager) Current(r *http.Request) (*Current, error) {
	secret, raw, ok := m.cookieSecret(r)
	if !ok {
		return nil, ErrNoSession
	}
	h := sha256.Sum256(raw[:])
	ctx := r.Context()
	s, u, err := m.st.LookupSession(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrNoSession
	case err != nil:
		return nil, fmt.Errorf("session: look up: %w", err)
	}
	if subtle.ConstantTimeCompare(s.Hash, h[:]) != 1 || u.ID != s.UserID {
		m.opts.Logger.Error("session: store returned a session row that does not match the lookup", "session_id", s.ID)
		return nil, ErrNoSession
	}
	if !s.RevokedAt.IsZero() {
		return nil, ErrNoSession
	}
	now := m.opts.Now()
	if !s.Alive(now, m.opts.IdleTimeout) {
		if _, err := m.revoke(ctx, s, audit.TypeSessionExpired, expiryReason(s, now)); err != nil {
			m.opts.Logger.Warn("session: ending an expired session failed; it stays refused", "session_id", s.ID, "err", err)
		}
		return nil, ErrNoSession
	}
	if u.Disabled {
		return nil, ErrNoSession
	}
	if now.Sub(s.LastSeenAt) >= m.opts.TouchInterval {
		at := toMillis(now)
		if err := m.st.TouchSession(ctx, s.ID, at); err != nil {
			m.opts.Logger.Warn("session: last-seen time not written", "session_id", s.ID, "err", err)
		} else {
			s.LastSeenAt = at
		}
	}
	return &Current{Session: s, User: u, Secret: secret}, nil
}

// expiryReason says why a dead, unrevoked session died:
// store.SessionEndLifetime or store.SessionEndIdle.
func expiryReason(s store.Session, now time.Time) string {
	if !now.Before(s.ExpiresAt) {
		return store.SessionEndLifetime
	}
	return store.SessionEndIdle
}

// End logs the request's session out: it revokes the session and its keys,
// clears the cookie and audits logout. It is idempotent: without a
// session, or with one already ended (say by a concurrent logout), it only
// clears the cookie. An error means the store failed; the cookie is
// cleared regardless.
func (m *Manager) End(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	m.clearCookie(w)
	h, ok := m.cookieHash(r)
	if !ok {
		return nil
	}
	s, _, err := m.st.LookupSession(ctx, h[:])
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("session: logout: %w", err)
	}
	if _, err := m.revoke(ctx, s, audit.TypeLogout, ""); err != nil {
		return fmt.Errorf("session: logout: %w", err)
	}
	return nil
}

// List returns the user's live sessions, newest first.
func (m *Manager) List(ctx context.Context, userID string) ([]store.Session, error) {
	all, err := m.st.ListSessions(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("session: list: %w", err)
	}
	now := m.opts.Now()
	live := all[:0]
	for _, s := range all {
		if s.Alive(now, m.opts.IdleTimeout) {
			live = append(live, s)
		}
	}
	return live, nil
}

// Revoke ends one of the user's sessions (with its keys) and audits
// session.revoked. An unknown id, or another user's session, is
// store.ErrNotFound (callers cannot probe for other users' sessions).
// Revoking an ended session changes nothing and is not an error.
func (m *Manager) Revoke(ctx context.Context, userID, sessionID string) error {
	s, err := m.st.GetSession(ctx, sessionID)
	if err != nil {
		return fmt.Errorf("session: revoke: %w", err)
	}
	if s.UserID != userID {
		return fmt.Errorf("session: revoke: %w", store.ErrNotFound)
	}
	if _, err := m.revoke(ctx, s, audit.TypeSessionRevoked, "revoked"); err != nil {
		return fmt.Errorf("session: revoke: %w", err)
	}
	return nil
}

// RevokeOthers ends every session of the user except keepSessionID and
// returns how many it ended.
func (m *Manager) RevokeOthers(ctx context.Context, userID, keepSessionID string) (int, error) {
	if keepSessionID == "" {
		return 0, errors.New("session: revoke others: no session to keep")
	}
	return m.revokeUser(ctx, userID, keepSessionID, "revoked_others")
}

// RevokeAll ends every session of the user, with every session key, and
// audits session.revoked with reason for each (for example
// "password_changed" or "user_disabled").
func (m *Manager) RevokeAll(ctx context.Context, userID, reason string) error {
	_, err := m.revokeUser(ctx, userID, "", reason)
	return err
}

func (m *Manager) revokeUser(ctx context.Context, userID, except, reason string) (int, error) {
	now := m.opts.Now()
	revs, err := m.st.RevokeUserSessions(ctx, userID, except, toMillis(now))
	if err != nil {
		return 0, fmt.Errorf("session: revoke sessions: %w", err)
	}
	for _, rv := range revs {
		m.ended(ctx, now, rv, audit.TypeSessionRevoked, reason)
	}
	return len(revs), nil
}

// revoke ends s with its keys; when this call ended it, it records typ
// (session.revoked, session.expired or logout) with reason, and the
// key.revoked events of its keys. The session's end reason is the expiry
// reason for session.expired, store.SessionEndRevoked otherwise.
func (m *Manager) revoke(ctx context.Context, s store.Session, typ, reason string) (bool, error) {
	now := m.opts.Now()
	end := store.SessionEndRevoked
	if typ == audit.TypeSessionExpired {
		end = reason
	}
	rv, err := m.st.RevokeSession(ctx, s.ID, toMillis(now), end)
	if err != nil {
		return false, err
	}
	m.ended(ctx, now, rv, typ, reason)
	return rv.Ended, nil
}

// ended tells the key caches and the audit log about a revocation.
func (m *Manager) ended(ctx context.Context, now time.Time, rv store.SessionRevocation, typ, reason string) {
	if len(rv.Keys) > 0 {
		for _, fn := range m.onKeys {
			fn(rv.Keys)
		}
	}
	if rv.Ended {
		details := map[string]any{"actor": actor(ctx, rv.Session.UserID)}
		if len(rv.Keys) > 0 {
			details["revoked_keys"] = len(rv.Keys)
		}
		m.rec.Record(ctx, audit.Event{
			Time: now, Type: typ, Outcome: store.OutcomeAllow, Reason: reason,
			UserID: rv.Session.UserID, CredentialID: rv.Session.ID, Details: details,
		})
	}
	for _, k := range rv.Keys {
		m.rec.Record(ctx, audit.Event{
			Time: now, Type: audit.TypeKeyRevoked, Outcome: store.OutcomeAllow,
			UserID: k.UserID, CredentialID: k.ID,
			Details: map[string]any{
				"name": k.Name, "prefix": k.Prefix, "kind": k.Kind, "session_id": rv.Session.ID,
				"reason": typ, "actor": actor(ctx, rv.Session.UserID),
			},
		})
	}
}

// actor names who caused a change: the principal in ctx, else the
// session's own user when the change came from a browser request (logout),
// else "system" (the cleaner).
func actor(ctx context.Context, fallback string) string {
	if p := principal.From(ctx); p != nil && p.UserID != "" {
		return p.UserID
	}
	if httpx.InfoFrom(ctx).RequestID != "" {
		return fallback
	}
	return "system"
}

// Clean ends sessions that died without anyone noticing (idle, or past
// their lifetime: session.expired is audited), then deletes sessions and
// API keys that expired or were revoked more than retention ago, in
// batches of CleanBatch rows. keys counts keys not bound to a session;
// session keys are deleted with their session. Several nodes may clean at
// once. Audit events are never deleted.
func (m *Manager) Clean(ctx context.Context, retention time.Duration) (sessions, keys int, err error) {
	now := m.opts.Now()
	for ctx.Err() == nil {
		revs, err := m.st.ExpireSessions(ctx, toMillis(now), m.opts.IdleTimeout, CleanBatch)
		if err != nil {
			return 0, 0, fmt.Errorf("session: clean: %w", err)
		}
		for _, rv := range revs {
			m.ended(ctx, now, rv, audit.TypeSessionExpired, expiryReason(rv.Session, now))
		}
		if len(revs) < CleanBatch {
			break
		}
	}
	cutoff := toMillis(now.Add(-retention))
	for ctx.Err() == nil {
		n, err := m.st.DeleteSessionsBefore(ctx, cutoff, CleanBatch)
		if err != nil {
			return sessions, keys, fmt.Errorf("session: clean: %w", err)
		}
		sessions += n
		if n < CleanBatch {
			break
		}
	}
	for ctx.Err() == nil {
		n, err := m.st.DeleteAPIKeysBefore(ctx, cutoff, CleanBatch)
		if err != nil {
			return sessions, keys, fmt.Errorf("session: clean: %w", err)
		}
		keys += n
		if n < CleanBatch {
			break
		}
	}
	return sessions, keys, ctx.Err()
}

// Run cleans once at once and then every `every` until ctx is done.
func (m *Manager) Run(ctx context.Context, every, retention time.Duration) {
	if every <= 0 {
		every = time.Hour
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s, k, err := m.Clean(ctx, retention)
		switch {
		case err != nil && ctx.Err() == nil:
			m.opts.Logger.Warn("session: cleaner failed; will retry", "err", err)
		case s+k > 0:
			m.opts.Logger.Info("session: cleaner deleted old rows", "sessions", s, "api_keys", k)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func toMillis(t time.Time) time.Time { return time.UnixMilli(t.UnixMilli()).UTC() }
