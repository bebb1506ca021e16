package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/mcpgate/mcpgate/internal/apikeys"
	"github.com/mcpgate/mcpgate/internal/audit"
	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/demo"
	"github.com/mcpgate/mcpgate/internal/identity"
	"github.com/mcpgate/mcpgate/internal/ratelimit/redistest"
	"github.com/mcpgate/mcpgate/internal/server"
	"github.com/mcpgate/mcpgate/internal/store"
)

// The rate limits of these tests live in the shared test Redis under fixed
// limiter names (login-account, login-ip, …) and outlive a run by their
// TTL, so every test uses an account and a client address of its own.

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomIP is an address of the documentation range 2001:db8::/32 that no
// other test (or earlier run) uses.
func randomIP() string {
	ip := net.ParseIP("2001:db8::")
	rand.Read(ip[4:])
	return ip.String()
}

// limitNode is one mcpgate server instance, driven through its handler from a
// fixed client address.
type limitNode struct {
	t   *testing.T
	srv *server.Server
	ip  string
}

func newLimitNode(t *testing.T, cfg config.Config, ip string) *limitNode {
	t.Helper()
	srv, err := server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &limitNode{t: t, srv: srv, ip: ip}
}

// do sends one request; h holds header name, value pairs.
func (n *limitNode) do(method, path, contentType, body string, h ...string) httpResult {
	return serveFrom(n.srv.Handler(), n.ip, method, path, contentType, body, h...)
}

func (n *limitNode) login(email, password string) httpResult {
	b, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return n.do("POST", "/auth/login", "application/json", string(b))
}

// newUser creates an account no other test uses and returns its email.
func newUser(t *testing.T, n *limitNode, password string) string {
	t.Helper()
	email := "guesser-" + randomHex(8) + "@example.com"
	if _, err := n.srv.Core().Users.Create(context.Background(), identity.NewUser{Email: email, Name: "Guesser", Password: password}); err != nil {
		t.Fatal(err)
	}
	return email
}

// Password guesses spread over two nodes (one database, one Redis) spend
// one per-account budget: after the burst every node answers 429 with
// Retry-After, even to the right password. Per-process limits would give
// each node a burst of its own.
func TestTwoNodesShareOneLoginBudget(t *testing.T) {
	redisURL := redistest.URL(t)
	run := func(t *testing.T, databaseURL string) {
		cfg := config.Defaults()
		cfg.DataDir = t.TempDir() // both nodes: the same server.key
		cfg.DatabaseURL = databaseURL
		cfg.RedisURL = redisURL
		ip := randomIP()
		nodes := []*limitNode{newLimitNode(t, cfg, ip), newLimitNode(t, cfg, ip)}
		const password = "correct horse battery staple"
		email := newUser(t, nodes[0], password)

		for i := range identity.DefaultLoginAccountBurst {
			if r := nodes[i%2].login(email, "wrong guess "+strconv.Itoa(i)); r.status != http.StatusUnauthorized {
				t.Fatalf("guess %d on node %d: %d %s, want 401", i+1, i%2+1, r.status, r.body)
			}
		}
		for i, n := range nodes {
			r := n.login(email, password)
			secs, _ := strconv.Atoi(r.header.Get("Retry-After"))
			if r.status != http.StatusTooManyRequests || r.json(t)["error"] != "rate_limited" ||
				secs < 1 || secs > int(identity.DefaultLoginAccountEvery.Seconds()) {
				t.Fatalf("node %d after the shared burst: %d %v %s, want 429 rate_limited with Retry-After up to 30 s", i+1, r.status, r.header, r.body)
			}
		}
		// The account's limit, not the address's: the audit (one database)
		// says so.
		if err := nodes[1].srv.Core().Audit.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		evs, err := nodes[1].srv.Core().DB.ListAudit(context.Background(), store.AuditFilter{Type: audit.TypeLoginFailed, Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Reason != audit.ReasonRateLimited || evs[0].Details["limit"] != "account" {
			t.Errorf("last login.failed = %+v, want rate_limited by the account limit", evs)
		}
	}
	t.Run("sqlite", func(t *testing.T) { run(t, filepath.Join(t.TempDir(), "shared.db")) })
	t.Run("postgres", func(t *testing.T) { run(t, postgresSchemaURL(t)) })
}

// redisProxy forwards TCP connections to the test Redis until stopped: a
// Redis that goes away under a running server.
type redisProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newRedisProxy(t *testing.T, target string) *redisProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &redisProxy{ln: ln}
	t.Cleanup(p.stop)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *redisProxy) stop() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// When Redis goes down under a running server, every limited endpoint
// fails closed with 503 and Retry-After in its own shape; requests with a
// valid credential, which no limiter guards, keep working.
func TestRedisDownFailsClosed(t *testing.T) {
	proxy, redisURL := proxiedRedis(t)
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.RedisURL = redisURL
	n := newLimitNode(t, cfg, randomIP())
	const password = "correct horse battery staple"
	email := newUser(t, n, password)
	if r := n.login(email, password); r.status != http.StatusOK {
		t.Fatalf("login with Redis up: %d %s", r.status, r.body)
	}
	u0, err := n.srv.Core().Users.Get(context.Background(), email)
	if err != nil {
		t.Fatal(err)
	}
	key, _, err := n.srv.Core().Keys.Issue(context.Background(), apikeys.IssueRequest{UserID: u0.ID, Name: "k", Scopes: []string{demo.ScopeRead}})
	if err != nil {
		t.Fatal(err)
	}

	proxy.stop()

	r := n.login(email, password)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.json(t)["error"] != "temporarily_unavailable" {
		t.Errorf("POST /auth/login with Redis down: %d %v %s, want 503 temporarily_unavailable with Retry-After", r.status, r.header, r.body)
	}
	form := url.Values{"email": {email}, "password": {password}}.Encode()
	r = n.do("POST", "/login", "application/x-www-form-urlencoded", form)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !bytes.Contains(r.body, []byte("Temporarily unavailable")) {
		t.Errorf("POST /login (sign-in page) with Redis down: %d %v, want the 503 page with Retry-After", r.status, r.header)
	}
	r = n.do("POST", "/register", "application/json", `{"client_name":"App","redirect_uris":["https://app.example.com/cb"]}`)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.json(t)["error"] != "temporarily_unavailable" {
		t.Errorf("POST /register with Redis down: %d %v %s, want 503 temporarily_unavailable with Retry-After", r.status, r.header, r.body)
	}
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	r = n.do("POST", "/mcp", "application/json", initialize, "Accept", "application/json, text/event-stream")
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || r.json(t)["error"] != "temporarily_unavailable" {
		t.Errorf("/mcp without a credential with Redis down: %d %v %s, want 503 temporarily_unavailable with Retry-After", r.status, r.header, r.body)
	}
	r = n.do("POST", "/mcp", "application/json", initialize, "Accept", "application/json, text/event-stream", "Authorization", "Bearer "+key)
	if r.status != http.StatusOK {
		t.Errorf("/mcp with a valid key with Redis down: %d %s, want 200", r.status, r.body)
	}
}

// An unreachable Redis at start is a start-up error naming the redacted
// URL, not a server that refuses every login.
func TestUnreachableRedisAtStart(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := config.Defaults()
	cfg.DataDir = t.TempDir()
	cfg.RedisURL = "redis://:s3cret-pw@" + addr + "/0"
	_, err = server.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--redis-url: redis at redis://:xxxxx@"+addr+"/0 does not answer") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("server.New with Redis down = %v; want a start-up error naming the redacted URL", err)
	}
}

// proxiedRedis puts a stoppable TCP proxy in front of the test Redis and
// returns it with the Redis URL that goes through it.
func proxiedRedis(t *testing.T) (*redisProxy, string) {
	t.Helper()
	u, err := url.Parse(redistest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := newRedisProxy(t, u.Host)
	u.Host = proxy.ln.Addr().String()
	return proxy, u.String()
}
