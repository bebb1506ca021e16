package tokens

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/verify"
)

// Defaults of Options.
const (
	DefaultAccessTokenTTL = time.Hour
	DefaultIDTokenTTL     = time.Hour
	DefaultRotateEvery    = 30 * 24 * time.Hour
	DefaultPublishLead    = 15 * time.Minute
	DefaultRefreshEvery   = time.Minute
	DefaultClockSkew      = verify.DefaultClockSkew

	// JWKSMaxAge is the max-age of the JWKS response. It must stay below
	// PublishLead: a verifier that cached the JWKS just before a new key
	// was published refetches before that key signs anything.
	JWKSMaxAge = 5 * time.Minute

	// MaxTokenTTL bounds the configurable token lifetimes.
	MaxTokenTTL = 24 * time.Hour

	// unknownKidReload is the least time between two key reloads caused
	// by tokens naming a kid this node does not know (KeySet).
	unknownKidReload = 10 * time.Second
)

// Options configure an Issuer.
type Options struct {
	// Issuer is the exact issuer identifier ("iss"): an http(s) URL without
	// query, fragment or trailing slash (RFC 8414 §2). Required.
	Issuer string
	// Algorithm of new signing keys: "ES256" (default), "EdDSA" or
	// "RS256". Changing it rotates the key at the next start.
	Algorithm string
	// AccessTokenTTL is the lifetime of access tokens (default 1 h, at
	// most 24 h, whole seconds).
	AccessTokenTTL time.Duration
	// IDTokenTTL is the lifetime of ID tokens (default 1 h, at most 24 h).
	IDTokenTTL time.Duration
	// RotateEvery is how long a key signs before the next one takes over
	// (default 30 days, at least 1 h).
	RotateEvery time.Duration
	// PublishLead is how long a new key is published before it signs
	// (default 15 min; more than JWKSMaxAge).
	PublishLead time.Duration
	// RefreshEvery is how often Run reloads the keys (to follow other
	// nodes' rotations), rotates when due and deletes expired keys
	// (default 1 min, less than PublishLead).
	RefreshEvery time.Duration
	// ClockSkew is the verifiers' leeway (default 30 s): retired keys stay
	// published that much longer.
	ClockSkew time.Duration
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// OnKeyCreated, when set, is called after this node created a signing
	// key (for the audit log). The record's PrivateKey is nil.
	OnKeyCreated func(store.SigningKey)
}

// Issuer mints mcpgate's JWTs and manages the signing keys. It is safe for
// concurrent use.
type Issuer struct {
	st     store.SigningKeyStore
	seal   *sealer
	opts   Options
	log    *slog.Logger
	keyTTL time.Duration // retention of retired keys: longest token + skew + lead

	mu      sync.Mutex              // serialises sync
	signers map[string]*keySigner   // decrypted keys by kid; guarded by mu
	view    atomic.Pointer[keyView] // what mint, JWKS and KeySet read
	lastUnk atomic.Int64            // unix ns of the last reload for an unknown kid
}

// keyView is an immutable snapshot of the keys.
type keyView struct {
	signing   []*keySigner       // keys that sign now or later, with activation times
	activates []time.Time        // activation of signing[i]; newest first
	published []verify.PublicKey // the JWKS
	jwks      []byte             // the JWKS document
	etag      string
}

// NewIssuer validates opts, loads the signing keys from st, creates the
// first key (or the next, when rotation is due or the algorithm changed)
// and returns the issuer. It fails when a stored key cannot be decrypted
// with serverKey (ErrWrongServerKey): nodes must share one server key.
func NewIssuer(ctx context.Context, st store.SigningKeyStore, serverKey []byte, opts Options) (*Issuer, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	seal, err := newSealer(serverKey)
	if err != nil {
		return nil, err
	}
	i := &Issuer{
		st:      st,
		seal:    seal,
		opts:    opts,
		log:     opts.Logger,
		keyTTL:  max(opts.AccessTokenTTL, opts.IDTokenTTL) + opts.ClockSkew + opts.PublishLead,
		signers: map[string]*keySigner{},
	}
	if err := i.sync(ctx, syncStart); err != nil {
		return nil, err
	}
	return i, nil
}

func (o *Options) setDefaults() error {
	if err := checkIssuer(o.Issuer); err != nil {
		return err
	}
	if o.Algorithm == "" {
		o.Algorithm = AlgES256
	}
	if !slices.Contains(Algorithms, o.Algorithm) {
		return fmt.Errorf("tokens: signing algorithm %q is not one of %v", o.Algorithm, Algorithms)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.AccessTokenTTL, DefaultAccessTokenTTL)
	def(&o.IDTokenTTL, DefaultIDTokenTTL)
	def(&o.RotateEvery, DefaultRotateEvery)
	def(&o.PublishLead, DefaultPublishLead)
	def(&o.RefreshEvery, DefaultRefreshEvery)
	def(&o.ClockSkew, DefaultClockSkew)
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"AccessTokenTTL", o.AccessTokenTTL}, {"IDTokenTTL", o.IDTokenTTL}} {
		if d.v < time.Second || d.v > MaxTokenTTL {
			return fmt.Errorf("tokens: %s %v must be between 1s and %v", d.name, d.v, MaxTokenTTL)
		}
	}
	switch {
	case o.PublishLead <= JWKSMaxAge:
		return fmt.Errorf("tokens: PublishLead %v must exceed the JWKS max-age %v", o.PublishLead, JWKSMaxAge)
	case o.RotateEvery < time.Hour || o.RotateEvery < 2*o.PublishLead:
		return fmt.Errorf("tokens: RotateEvery %v must be at least 1h and twice PublishLead (%v)", o.RotateEvery, o.PublishLead)
	case o.RefreshEvery <= 0 || o.RefreshEvery >= o.PublishLead:
		return fmt.Errorf("tokens: RefreshEvery %v must be positive and below PublishLead %v", o.RefreshEvery, o.PublishLead)
	case o.ClockSkew < 0:
		return fmt.Errorf("tokens: ClockSkew %v must not be negative", o.ClockSkew)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return nil
}

// checkIssuer: RFC 8414 §2: "a URL that uses the "https" scheme and has no
// query or fragment components" (http is tolerated for loopback and
// development; the server's configuration decides where it is allowed).
// No trailing slash, so that iss, the metadata's issuer and the verifiers'
// expectation are byte-identical.
func checkIssuer(iss string) error {
	u, err := url.Parse(iss)
	switch {
	case iss == "":
		return errors.New("tokens: Options.Issuer is required")
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil:
		return fmt.Errorf("tokens: issuer %q must be an absolute http(s) URL", iss)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(iss, "?#"):
		return fmt.Errorf("tokens: issuer %q must have no query or fragment (RFC 8414 §2)", iss)
	case strings.HasSuffix(iss, "/"):
		return fmt.Errorf("tokens: issuer %q must not end with a slash", iss)
	}
	return nil
}

// Issuer returns the issuer identifier.
func (i *Issuer) Issuer() string { return i.opts.Issuer }

// AccessTokenTTL returns the access-token lifetime.
func (i *Issuer) AccessTokenTTL() time.Duration { return i.opts.AccessTokenTTL }

// Run keeps the keys current until ctx ends: every RefreshEvery it reloads
// them (other nodes may have rotated), rotates when due and deletes keys
// no token can need any more. Failures are logged and retried.
func (i *Issuer) Run(ctx context.Context) {
	t := time.NewTicker(i.opts.RefreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := i.Sync(ctx); err != nil && ctx.Err() == nil {
				i.log.Error("tokens: signing keys not refreshed", "err", err)
			}
		}
	}
}

// Sync does one round of Run now.
func (i *Issuer) Sync(ctx context.Context) error { return i.sync(ctx, syncPeriodic) }

// Kinds of sync.
const (
	syncStart    = iota // NewIssuer: may also rotate for a changed algorithm
	syncPeriodic        // Run: rotate when due, delete expired keys
	syncReload          // a token named an unknown kid: reload only
)

// sync reloads the keys, creates the next key when due, deletes expired
// ones and installs the new view. On an error the previous view stays.
func (i *Issuer) sync(ctx context.Context, kind int) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	keys, err := i.st.ListSigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("tokens: load signing keys: %w", err)
	}
	now := i.opts.Now()
	if kind == syncReload {
		return i.install(keys, now)
	}
	if created, err := i.rotateIfDue(ctx, keys, now, kind == syncStart); err != nil {
		return err
	} else if created {
		if keys, err = i.st.ListSigningKeys(ctx); err != nil {
			return fmt.Errorf("tokens: load signing keys: %w", err)
		}
	}
	if n, err := i.st.DeleteSigningKeysRetiredBefore(ctx, now.Add(-i.keyTTL)); err != nil {
		i.log.Warn("tokens: cannot delete expired signing keys", "err", err)
	} else if n > 0 {
		i.log.Info("tokens: deleted expired signing keys", "count", n)
	}
	return i.install(keys, now)
}

// rotateIfDue creates the first key, or the next generation when the
// newest key has signed for RotateEvery - PublishLead, or (at start-up)
// when the configured algorithm differs from the newest key's. Losing the
// race to another node (ErrConflict) is fine: its key is used.
func (i *Issuer) rotateIfDue(ctx context.Context, keys []store.SigningKey, now time.Time, starting bool) (bool, error) {
	next := store.SigningKey{CreatedAt: now, ActivatesAt: now.Add(i.opts.PublishLead)}
	var gen int64 = 1
	switch {
	case len(keys) == 0:
		next.ActivatesAt = now // nothing signed yet: nobody can hold a stale JWKS
	default:
		newest := keys[0]
		gen = newest.Generation + 1
		due := !now.Before(newest.ActivatesAt.Add(i.opts.RotateEvery - i.opts.PublishLead))
		algChanged := starting && newest.Algorithm != i.opts.Algorithm
		if algChanged && newest.ActivatesAt.After(now) {
			// Another node with another configuration just rotated; do
			// not rotate back and forth.
			i.log.Warn("tokens: the next signing key uses another algorithm than configured; nodes disagree on the signing algorithm",
				"configured", i.opts.Algorithm, "next", newest.Algorithm)
			algChanged = false
		}
		if !due && !algChanged {
			return false, nil
		}
	}
	k, _, err := newSigningKey(i.seal, i.opts.Algorithm, gen, next)
	if err != nil {
		return false, err
	}
	if err := i.st.CreateSigningKey(ctx, k); err != nil {
		if errors.Is(err, store.ErrConflict) {
			i.log.Debug("tokens: another node rotated the signing key first", "generation", gen)
			return true, nil
		}
		return false, fmt.Errorf("tokens: store signing key: %w", err)
	}
	i.log.Info("tokens: signing key created", "kid", k.ID, "generation", k.Generation,
		"alg", k.Algorithm, "activates_at", k.ActivatesAt.UTC().Format(time.RFC3339))
	if i.opts.OnKeyCreated != nil {
		rec := k
		rec.PrivateKey = nil
		i.opts.OnKeyCreated(rec)
	}
	return true, nil
}

// install builds and publishes the view of keys (newest first).
func (i *Issuer) install(keys []store.SigningKey, now time.Time) error {
	v := &keyView{}
	var docKeys []json.RawMessage
	live := map[string]bool{}
	for _, k := range keys {
		published := k.RetiresAt.IsZero() || now.Before(k.RetiresAt.Add(i.keyTTL))
		signs := k.RetiresAt.IsZero() || now.Before(k.RetiresAt)
		if !published {
			continue
		}
		pub, err := parseStoredKey(k)
		if err != nil {
			// A row that does not check out is never published nor used.
			i.log.Error("tokens: ignoring a stored signing key", "kid", k.ID, "err", err)
			continue
		}
		v.published = append(v.published, pub)
		docKeys = append(docKeys, json.RawMessage(k.PublicJWK))
		if !signs {
			continue
		}
		s := i.signers[k.ID]
		if s == nil {
			priv, err := openSigningKey(i.seal, k, pub)
			if err != nil {
				return err
			}
			if s, err = newKeySigner(k.ID, k.Algorithm, priv); err != nil {
				return err
			}
			i.signers[k.ID] = s
		}
		live[k.ID] = true
		v.signing = append(v.signing, s)
		v.activates = append(v.activates, k.ActivatesAt)
	}
	if len(v.signing) == 0 {
		return errors.New("tokens: no signing key available")
	}
	for kid := range i.signers {
		if !live[kid] {
			delete(i.signers, kid)
		}
	}
	if docKeys == nil {
		docKeys = []json.RawMessage{}
	}
	doc, err := json.Marshal(struct {
		Keys []json.RawMessage `json:"keys"`
	}{docKeys})
	if err != nil {
		return fmt.Errorf("tokens: JWKS: %w", err)
	}
	sum := sha256.Sum256(doc)
	v.jwks = doc
	v.etag = `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`
	i.view.Store(v)
	return nil
}

// signer returns the key that signs at now: the newest one activated.
func (v *keyView) signer(now time.Time) (*keySigner, error) {
	for n, s := range v.signing {
		if !v.activates[n].After(now) {
			return s, nil
		}
	}
	return nil, errors.New("tokens: no signing key is active yet")
}

// KeySet returns the issuer's published keys as a verify.KeySource, for
// verifying its tokens in process (no HTTP). A kid it does not know makes
// it reload the keys from the store (another node may have rotated), at
// most once every 10 s.
func (i *Issuer) KeySet() verify.KeySource { return issuerKeys{i} }

type issuerKeys struct{ i *Issuer }

func (k issuerKeys) LookupKey(ctx context.Context, kid, alg string) (verify.PublicKey, error) {
	if pk, ok := verify.FindKey(k.i.view.Load().published, kid, alg); ok {
		return pk, nil
	}
	if kid != "" && k.i.mayReload() {
		if err := k.i.sync(ctx, syncReload); err != nil {
			k.i.log.Warn("tokens: reload for an unknown kid failed", "err", err)
		}
		if pk, ok := verify.FindKey(k.i.view.Load().published, kid, alg); ok {
			return pk, nil
		}
	}
	return verify.PublicKey{}, fmt.Errorf("tokens: %w: no %s key with kid %q", verify.ErrUnknownKey, alg, clip(kid))
}

// mayReload claims the right to reload for an unknown kid (rate-limited).
func (i *Issuer) mayReload() bool {
	now := i.opts.Now().UnixNano()
	last := i.lastUnk.Load()
	if last != 0 && now-last < int64(unknownKidReload) {
		return false
	}
	return i.lastUnk.CompareAndSwap(last, now)
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
