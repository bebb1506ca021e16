package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed static/*
var staticFS embed.FS

// staticFiles serves the embedded assets under content-hashed names
// ("app.3f9c2a1b0d.css"), so they can be cached for a year: a changed
// file gets a new name.
type staticFiles struct {
	byHashed map[string]staticFile // "app.3f9c2a1b0d.css" → file
	urls     map[string]string     // "app.css" → "/static/app.3f9c2a1b0d.css"
}

type staticFile struct {
	body        []byte
	contentType string
}

func loadStatic() *staticFiles {
	s := &staticFiles{byHashed: map[string]staticFile{}, urls: map[string]string{}}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name := e.Name()
		body, err := staticFS.ReadFile("static/" + name)
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		ext := path.Ext(name)
		hashed := strings.TrimSuffix(name, ext) + "." + hex.EncodeToString(sum[:5]) + ext
		ct := map[string]string{
			".css": "text/css; charset=utf-8",
			".js":  "text/javascript; charset=utf-8",
			".svg": "image/svg+xml",
		}[ext]
		if ct == "" {
			ct = "application/octet-stream"
		}
		s.byHashed[hashed] = staticFile{body: body, contentType: ct}
		s.urls[name] = "/static/" + hashed
	}
	return s
}

// URL returns the versioned URL of an embedded asset.
func (s *staticFiles) URL(name string) string {
	if u, ok := s.urls[name]; ok {
		return u
	}
	panic("web: no static file " + name)
}

func (h *Handler) serveStatic(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f, ok := h.static.byHashed[r.PathValue("file")]
	if !ok {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", f.contentType)
	hd.Set("Content-Length", strconv.Itoa(len(f.body)))
	hd.Set("Cache-Control", "public, max-age=31536000, immutable")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(f.body)
}
