package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/mcpgate/mcpgate/internal/httpx"
)

// inProcess is the http.RoundTripper of the facade's MCP client. It serves
// each request with mcpgate's own /mcp handler chain (authn included) inside
// this process, streaming the response, so the facade is an MCP client like
// any other: the same authentication, policy, scope checks and audit events,
// without a network hop or a second listener.
//
// One inProcess serves one facade request: it carries that caller's
// credential, client IP and user agent, and remembers the last refusal of
// the MCP endpoint so the facade can answer with its precise reason (the SDK
// client reduces HTTP failures to status text).
type inProcess struct {
	handler http.Handler
	logger  *slog.Logger

	// Set on every inner request.
	credential http.Header // exactly the credential headers to send
	info       httpx.RequestInfo
	origin     string // the caller's Origin, so /mcp applies its origin policy

	mu      sync.Mutex
	refusal *refusal // first 4xx/5xx answer of the MCP endpoint
}

// refusal is an error answer of the MCP endpoint, kept for the facade.
type refusal struct {
	status    int
	challenge string // WWW-Authenticate
	body      []byte // at most maxRefusalBody bytes
}

const maxRefusalBody = 64 << 10

// statelessProtocol is the protocol the facade speaks. Nothing older is
// sent: the legacy handshake would create a server-side session for a
// one-shot request.
const statelessProtocol = "2026-07-28"

var errRefused = errors.New("api: the MCP endpoint refused the request")

func (t *inProcess) refused() *refusal {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refusal
}

// RoundTrip implements http.RoundTripper.
func (t *inProcess) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	// After a refusal the answer is known; a retry or the SDK's fallback
	// handshake would only add audit rows for the same refusal.
	if t.refused() != nil {
		return nil, errRefused
	}
	if v := req.Header.Get("Mcp-Protocol-Version"); v < statelessProtocol {
		return nil, fmt.Errorf("api: refusing to send an MCP request of protocol %q: the facade speaks %s only", v, statelessProtocol)
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		if err != nil {
			return nil, err
		}
		body = b
	}

	// The inner request is a server-side request built from scratch: none
	// of the outer request's context values (its principal above all) leak
	// in; the MCP handler chain authenticates the credential itself.
	ctx := detach(req.Context(), httpx.WithInfo(context.Background(), t.info))
	in, err := http.NewRequestWithContext(ctx, req.Method, req.URL.String(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	in.Header = req.Header.Clone()
	for _, h := range []string{"Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization", "Origin"} {
		in.Header.Del(h)
	}
	for k, v := range t.credential {
		in.Header[k] = append([]string(nil), v...)
	}
	if t.origin != "" {
		in.Header.Set("Origin", t.origin)
	}
	in.Header.Set("User-Agent", t.info.UserAgent)
	in.RemoteAddr = net.JoinHostPort(t.info.ClientIP, "0")
	in.RequestURI = req.URL.RequestURI()
	in.Host = req.URL.Host
	in.ContentLength = int64(len(body))
	if len(body) == 0 {
		in.Body = http.NoBody
	}

	rw := newPipeWriter()
	go func() {
		defer func() {
			if v := recover(); v != nil {
				if v != http.ErrAbortHandler {
					t.logger.Error("panic in the MCP handler serving the API facade", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
				}
				rw.finish(fmt.Errorf("api: MCP handler failed: %v", v))
				return
			}
			rw.finish(nil)
		}()
		t.handler.ServeHTTP(rw, in)
	}()

	select {
	case <-rw.headerSent:
	case <-ctx.Done():
		rw.pr.CloseWithError(ctx.Err())
		return nil, ctx.Err()
	}
	if rw.err != nil && rw.status == 0 {
		return nil, rw.err
	}
	resp := &http.Response{
		Status:        fmt.Sprintf("%d %s", rw.status, http.StatusText(rw.status)),
		StatusCode:    rw.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rw.sent,
		Body:          rw.pr,
		ContentLength: -1,
		Request:       req,
	}
	if rw.status >= 400 {
		// Error bodies are small; keep a copy for the facade's answer and
		// give the SDK the same bytes.
		b, _ := io.ReadAll(io.LimitReader(rw.pr, maxRefusalBody))
		rw.pr.Close()
		t.mu.Lock()
		if t.refusal == nil {
			t.refusal = &refusal{status: rw.status, challenge: rw.sent.Get("WWW-Authenticate"), body: b}
		}
		t.mu.Unlock()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		resp.ContentLength = int64(len(b))
	}
	return resp, nil
}

// pipeWriter is a streaming http.ResponseWriter: the header is handed over
// at the first WriteHeader, Write or Flush (or when the handler returns),
// and the body flows through a pipe as the handler writes it, so an SSE
// response reaches the client event by event.
type pipeWriter struct {
	header     http.Header
	sent       http.Header
	status     int
	headerSent chan struct{}
	once       sync.Once
	pr         *io.PipeReader
	pw         *io.PipeWriter
	err        error // set before headerSent closes when the handler failed first
}

func newPipeWriter() *pipeWriter {
	pr, pw := io.Pipe()
	return &pipeWriter{header: http.Header{}, headerSent: make(chan struct{}), pr: pr, pw: pw}
}

func (p *pipeWriter) Header() http.Header { return p.header }

func (p *pipeWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 {
		return // informational answers are not forwarded
	}
	p.once.Do(func() {
		p.status = code
		p.sent = p.header.Clone()
		close(p.headerSent)
	})
}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.pw.Write(b)
}

// Flush sends the header; written bytes are already with the reader.
func (p *pipeWriter) Flush() { p.WriteHeader(http.StatusOK) }

// finish ends the response: a handler that wrote nothing answered 200 with
// an empty body (as net/http does); err aborts the body stream.
func (p *pipeWriter) finish(err error) {
	p.once.Do(func() {
		if err != nil {
			p.err = err
		} else {
			p.status = http.StatusOK
		}
		p.sent = p.header.Clone()
		close(p.headerSent)
	})
	if err != nil {
		p.pw.CloseWithError(err)
		return
	}
	p.pw.Close()
}

// detach returns a context with the cancellation and deadline of parent
// and the values of values only.
func detach(parent, values context.Context) context.Context {
	return detached{Context: values, parent: parent}
}

type detached struct {
	context.Context // values
	parent          context.Context
}

func (d detached) Deadline() (time.Time, bool) { return d.parent.Deadline() }
func (d detached) Done() <-chan struct{}       { return d.parent.Done() }
func (d detached) Err() error                  { return d.parent.Err() }
