package store

import (
	"context"
	"time"
)

// OAuth client kinds: how a client came to be known.
const (
	// ClientKindCIMD: the client_id is an https URL whose Client ID Metadata
	// Document mcpgate fetched; the row is a cache of that document.
	ClientKindCIMD = "cimd"
	// ClientKindDCR: registered through dynamic client registration (RFC 7591).
	ClientKindDCR = "dcr"
	// ClientKindStatic: added by an operator (mcpgate client add).
	ClientKindStatic = "static"
)

// OAuthClient is an OAuth client of mcpgate's authorization server. One
// table holds the three kinds. A confidential client's secret never reaches
// the store: only its SHA-256 (SecretHash); a public client has none.
type OAuthClient struct {
	ID       string // "ocl_…": internal handle
	ClientID string // the OAuth client_id: unique; the document URL for kind cimd
	Kind     string // ClientKind*
	Name     string // client_name, for display

	SecretHash []byte // SHA-256 of the client secret (32 bytes); nil for public clients

	RedirectURIs            []string // registered redirect URIs, exactly as registered
	GrantTypes              []string
	ResponseTypes           []string
	TokenEndpointAuthMethod string   // "none", "client_secret_basic" or "client_secret_post"
	ApplicationType         string   // "web" or "native"
	Scopes                  []string // scopes the client may ask for; empty = no restriction beyond the server's

	ClientURI string
	LogoURI   string

	MetadataURL  string // kind cimd: the document URL (equal to ClientID)
	MetadataJSON string // kind cimd: the document as fetched; kind dcr: the registered metadata

	SoftwareID      string
	SoftwareVersion string

	// DedupKey is set for deduplicated public registrations: the hash of
	// their normalised metadata. Unique when not empty.
	DedupKey string

	CreatedAt  time.Time
	LastUsedAt time.Time // zero: never used
	FetchedAt  time.Time // kind cimd: when the document was fetched
	CacheUntil time.Time // kind cimd: when the document must be fetched again
}

// Public reports whether the client has no secret (token endpoint
// authentication method "none").
func (c OAuthClient) Public() bool { return len(c.SecretHash) == 0 }

// ClientStore persists OAuth clients. Client ids are compared byte for
// byte (a CIMD client_id is a URL compared by simple string comparison).
type ClientStore interface {
	// CreateOAuthClient inserts c. ErrConflict when the id, the client_id
	// or a non-empty DedupKey is taken.
	CreateOAuthClient(ctx context.Context, c OAuthClient) error
	// GetOAuthClient returns the client with this client_id; ErrNotFound.
	GetOAuthClient(ctx context.Context, clientID string) (OAuthClient, error)
	// FindOAuthClientByDedupKey returns the client with this dedup key;
	// ErrNotFound.
	FindOAuthClientByDedupKey(ctx context.Context, key string) (OAuthClient, error)
	// ListOAuthClients returns the clients of a kind ("" = all), newest first.
	ListOAuthClients(ctx context.Context, kind string) ([]OAuthClient, error)
	// DeleteOAuthClient deletes the client with this client_id and returns
	// it as it was; ErrNotFound.
	DeleteOAuthClient(ctx context.Context, clientID string) (OAuthClient, error)
	// TouchOAuthClient moves LastUsedAt forward to at (never backwards).
	// Unknown client ids are ignored.
	TouchOAuthClient(ctx context.Context, clientID string, at time.Time) error
	// UpsertCIMDClient stores a freshly fetched Client ID Metadata Document:
	// it inserts c (kind cimd) or, when a cimd row with the same client_id
	// exists, replaces its metadata and fetch times while keeping its ID,
	// CreatedAt and LastUsedAt. It returns the row as stored. ErrConflict
	// when the client_id belongs to a client of another kind (an operator
	// may pre-register a URL client_id: it is never overwritten by a fetch).
	UpsertCIMDClient(ctx context.Context, c OAuthClient) (OAuthClient, error)
	// ReapOAuthClients deletes up to limit clients of kinds dcr and cimd
	// that were never used and created before unusedBefore, or last used
	// before idleBefore, and returns them. A zero cutoff disables its rule.
	// Static clients are never reaped. Safe to run on several nodes at once:
	// each client is deleted (and returned) by one caller.
	ReapOAuthClients(ctx context.Context, unusedBefore, idleBefore time.Time, limit int) ([]OAuthClient, error)
}
