package oauth

import (
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
	"github.com/mcpgate/mcpgate/internal/store"
	"github.com/mcpgate/mcpgate/internal/store/storetest"
)

// recorder is an audit.Recorder keeping events in memory.
type recorder struct {
	mu     sync.Mutex
	events []audit.Event
}

func (r *recorder) Record(_ context.Context, e audit.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// of returns the events of type typ.
func (r *recorder) of(typ string) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.events {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// last returns the newest event of type typ (fails the test if none).
func (r *recorder) last(t *testing.T, typ string) audit.Event {
	t.Helper()
	ev := r.of(typ)
	if len(ev) == 0 {
		t.Fatalf("no %s audit event", typ)
	}
	return ev[len(ev)-1]
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2026, 7, 28, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a Clients over a fresh SQLite store with a recorder and a clock.
type env struct {
	st    store.ClientStore
	rec   *recorder
	clock *clock
	c     *Clients
}

func newEnv(t *testing.T, opts ClientsOptions) *env {
	t.Helper()
	e := &env{st: storetest.SQLite(t), rec: &recorder{}, clock: newClock()}
	if opts.Now == nil {
		opts.Now = e.clock.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	e.c = NewClients(e.st, e.rec, opts)
	return e
}

// resolverFunc adapts a function to Resolver.
type resolverFunc func(ctx context.Context, network, host string) ([]netip.Addr, error)

func (f resolverFunc) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return f(ctx, network, host)
}

// staticResolver answers every host with addrs.
func staticResolver(addrs ...string) resolverFunc {
	return func(context.Context, string, string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

// docServer is an https server for Client ID Metadata Documents. Its
// certificate is valid for example.com and *.example.com; the resolver of
// cimdEnv points those names at it.
type docServer struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	docs map[string]docResponse // by path
}

type docResponse struct {
	delay   time.Duration
	status  int
	body    string
	headers map[string]string
}

func newDocServer(t *testing.T) *docServer {
	t.Helper()
	d := &docServer{docs: map[string]docResponse{}}
	d.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d.hits.Add(1)
		d.mu.Lock()
		resp, ok := d.docs[r.URL.Path]
		d.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		time.Sleep(resp.delay)
		for k, v := range resp.headers {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "application/json")
		}
		w.WriteHeader(cmpOrInt(resp.status, http.StatusOK))
		w.Write([]byte(resp.body))
	}))
	d.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	d.srv.StartTLS()
	t.Cleanup(d.srv.Close)
	return d
}

func cmpOrInt(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// set serves body at path.
func (d *docServer) set(path string, resp docResponse) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.docs[path] = resp
}

// port is the server's port.
func (d *docServer) port() string {
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(d.srv.URL, "https://"))
	return p
}

// url is the document URL for path on host (a name the test resolver
// points at the server).
func (d *docServer) url(host, path string) string {
	return "https://" + host + ":" + d.port() + path
}

func (d *docServer) roots() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(d.srv.Certificate())
	return pool
}

// cimdEnv is an env whose documents come from a docServer, reached through
// loopback (the test-only switch) under the name example.com.
func cimdEnv(t *testing.T, opts ClientsOptions) (*env, *docServer) {
	t.Helper()
	d := newDocServer(t)
	opts.CIMDAllowLoopback = true
	opts.CIMDRootCAs = d.roots()
	if opts.Resolver == nil {
		opts.Resolver = staticResolver("127.0.0.1")
	}
	return newEnv(t, opts), d
}

// cimdDoc is a valid document for id.
func cimdDoc(id string, extra string) string {
	return `{"client_id":"` + id + `","client_name":"Example MCP Client","redirect_uris":["http://127.0.0.1/callback","http://localhost/callback"],` +
		`"grant_types":["authorization_code","refresh_token"],"response_types":["code"],"token_endpoint_auth_method":"none"` + extra + `}`
}

// failingLimiter is a rate limiter whose backend is down.
type failingLimiter struct{}

func (failingLimiter) Allow(context.Context, string) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, errors.New("limiter backend down")
}
