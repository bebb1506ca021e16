// Package mcptest holds helpers for tests that drive an MCP endpoint with the
// go-sdk client: a stand-in for the authn middleware, a recording audit
// recorder and a client connector.
package mcptest

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/httpx"
	"github.com/mcpgate/mcpgate/internal/principal"
)

// Auth stands in for the authn middleware: "Authorization: Bearer <name>"
// selects users[name] (a copy is put into the context, like authn does with
// a fresh principal per request). No or an unknown name answers 401.
func Auth(users map[string]*principal.Principal, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		p := users[name]
		if !ok || p == nil {
			httpx.WriteChallenge(w, http.StatusUnauthorized, httpx.Challenge{Error: "invalid_token"})
			return
		}
		cp := *p
		cp.Scopes = slices.Clone(p.Scopes)
		ctx := httpx.WithInfo(r.Context(), httpx.RequestInfo{ClientIP: httpx.ClientIP(r), UserAgent: httpx.UserAgent(r)})
		next.ServeHTTP(w, r.WithContext(principal.With(ctx, &cp)))
	})
}

// Recorder is an audit.Recorder that keeps every event.
type Recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

// Record implements audit.Recorder.
func (r *Recorder) Record(ctx context.Context, e audit.Event) {
	info := httpx.InfoFrom(ctx)
	if e.ClientIP == "" {
		e.ClientIP = info.ClientIP
	}
	if e.UserAgent == "" {
		e.UserAgent = info.UserAgent
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns the events recorded so far, oldest first.
func (r *Recorder) Events() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// OfType returns the recorded events of type typ.
func (r *Recorder) OfType(typ string) []audit.Event {
	var out []audit.Event
	for _, e := range r.Events() {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// Reset forgets every event.
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// Bearer is an http.RoundTripper that sends "Authorization: Bearer Token".
type Bearer struct {
	Token string
	Base  http.RoundTripper // default http.DefaultTransport
}

// RoundTrip implements http.RoundTripper.
func (b *Bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.Token)
	base := b.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(r)
}

// Connect opens a go-sdk client session to url as token. protocolVersion ""
// is the SDK's latest (the stateless 2026-07-28 protocol); "2025-06-18" and
// the like use the initialize handshake and a session. The session is closed
// when the test ends.
func Connect(t testing.TB, url, token, protocolVersion string) *mcp.ClientSession {
	t.Helper()
	cs, err := Dial(context.Background(), url, token, protocolVersion)
	if err != nil {
		t.Fatalf("connecting to %s as %q (protocol %q): %v", url, token, protocolVersion, err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

// Dial is Connect without the testing.TB.
func Dial(ctx context.Context, url, token, protocolVersion string) (*mcp.ClientSession, error) {
	client := mcp.NewClient(&mcp.Implementation{Name: "mcptest", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{
		Endpoint:   url,
		HTTPClient: &http.Client{Transport: &Bearer{Token: token}, Timeout: 30 * time.Second},
		MaxRetries: -1,
		// The standalone GET stream is not needed by these tests and keeps a
		// request open per session.
		DisableStandaloneSSE: true,
	}
	return client.Connect(ctx, transport, &mcp.ClientSessionOptions{ProtocolVersion: protocolVersion})
}
