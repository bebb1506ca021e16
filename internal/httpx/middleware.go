package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"
)

// StatusRecorder captures the status code and size of a response while
// keeping http.Flusher (needed for SSE streams) reachable via Unwrap.
type StatusRecorder struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

func (s *StatusRecorder) WriteHeader(code int) {
	if s.Status == 0 {
		s.Status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *StatusRecorder) Write(b []byte) (int, error) {
	if s.Status == 0 {
		s.Status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.Bytes += int64(n)
	return n, err
}

// Flush forwards to the wrapped writer when it can flush.
func (s *StatusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *StatusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Observe is told about every finished request (route pattern, status, time).
type Observe func(r *http.Request, route string, status int, d time.Duration)

// Common wraps the whole server: request info in the context, recovery from
// panics (a 500 with no details; the stack goes to the log), security
// headers, a body limit, and one structured log line per request. The log
// has the path (or, for routes that asked with LogRoute, the route
// pattern) but never the query string or headers, where credentials could
// be. The client address is the TCP peer, or the address the trusted
// proxies forwarded (ClientIPBehind).
func Common(next http.Handler, log *slog.Logger, maxBody int64, observe Observe, trustedProxies ...netip.Prefix) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := RequestInfo{ClientIP: ClientIPBehind(r, trustedProxies), UserAgent: UserAgent(r), RequestID: newRequestID()}
		logged := &loggedPath{}
		r = r.WithContext(context.WithValue(WithInfo(r.Context(), info), loggedPathKey{}, logged))
		rec := &StatusRecorder{ResponseWriter: w}
		h := rec.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Request-Id", info.RequestID)
		if r.ContentLength > maxBody {
			msg := fmt.Sprintf("request body exceeds %d bytes", maxBody)
			if isFormPost(r) {
				// A browser form: a readable page, not JSON.
				rec.Header().Set("Content-Type", "text/html; charset=utf-8")
				rec.WriteHeader(http.StatusRequestEntityTooLarge)
				fmt.Fprintf(rec, "<!doctype html><title>Too large</title><h1>Request too large</h1><p>The form you sent is larger than %d bytes. Go back and shorten it.</p>", maxBody)
			} else {
				WriteJSON(rec, http.StatusRequestEntityTooLarge, OAuthError{Error: "request_too_large", Description: msg})
			}
		} else {
			if r.Body != nil {
				r.Body = http.MaxBytesReader(rec, r.Body, maxBody)
			}
			func() {
				defer func() {
					if v := recover(); v != nil {
						if v == http.ErrAbortHandler {
							panic(v)
						}
						log.Error("panic serving request", "path", logged.of(r), "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
						if rec.Status == 0 {
							WriteJSON(rec, http.StatusInternalServerError, OAuthError{Error: "server_error", Description: "internal error"})
						}
					}
				}()
				next.ServeHTTP(rec, r)
			}()
		}
		if rec.Status == 0 {
			rec.Status = http.StatusOK
		}
		d := time.Since(start)
		if observe != nil {
			observe(r, r.Pattern, rec.Status, d)
		}
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method), slog.String("path", truncatePath(logged.of(r))),
			slog.Int("status", rec.Status), slog.Int64("bytes", rec.Bytes),
			slog.Duration("duration", d), slog.String("ip", info.ClientIP), slog.String("request_id", info.RequestID))
	})
}

// loggedPath is what the request log shows for a request's path: the path
// itself, unless the handler asked for its route pattern (LogRoute).
type loggedPath struct{ route string }

type loggedPathKey struct{}

func (l *loggedPath) of(r *http.Request) string {
	if l.route != "" {
		return l.route
	}
	return r.URL.Path
}

// LogRoute makes the request log show r's route pattern (without its
// method: "/api/login-requests/{id}/user") instead of its path, for routes
// whose path holds a bearer handle that must not land in logs. Call it
// from the handler Common wraps (r.Pattern is set by then).
func LogRoute(r *http.Request) {
	l, ok := r.Context().Value(loggedPathKey{}).(*loggedPath)
	if !ok {
		return
	}
	route := r.Pattern
	if _, path, found := strings.Cut(route, " "); found {
		route = path
	}
	if route == "" {
		route = "(route hidden)"
	}
	l.route = route
}

func isFormPost(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data")
}

func truncatePath(p string) string {
	if len(p) > 200 {
		return p[:200] + "…"
	}
	return p
}

func newRequestID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
