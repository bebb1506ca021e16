package config

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MinServerKeyBytes is the shortest accepted server key.
const MinServerKeyBytes = 32

// ServerKeyFile is the file name of the generated server key in the data
// directory.
const ServerKeyFile = "server.key"

// decodeServerKey reads base64 (standard or URL alphabet, padded or not)
// of at least MinServerKeyBytes bytes. Errors never repeat the value.
func decodeServerKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			if len(b) < MinServerKeyBytes {
				return nil, fmt.Errorf("must be the base64 of at least %d bytes, got %d bytes", MinServerKeyBytes, len(b))
			}
			return b, nil
		}
	}
	return nil, errors.New("is not valid base64 (generate one with: openssl rand -base64 32)")
}

// LoadServerKey returns the server key: --server-key when set, otherwise
// the key in <data-dir>/server.key, which is created (32 random bytes,
// base64, mode 0600) when it does not exist yet. A key file that group or
// others may read or write is refused, as is a short or malformed one.
//
// The key derives the MCP keys of browser sessions: every node serving the
// same database must use the same key (set --server-key, or copy the file),
// and changing it makes every existing session key unrecoverable (their
// sessions get new ones only after logging in again).
func (c *Config) LoadServerKey() ([]byte, error) {
	if c.ServerKey != "" {
		b, err := decodeServerKey(c.ServerKey)
		if err != nil {
			return nil, fmt.Errorf("--server-key: %w", err)
		}
		return b, nil
	}
	path := filepath.Join(c.DataDir, ServerKeyFile)
	b, err := readServerKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return b, err
	}
	var raw [MinServerKeyBytes]byte
	rand.Read(raw[:])
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readServerKeyFile(path) // another process created it first
	}
	if err != nil {
		return nil, fmt.Errorf("server key: cannot create %s: %w", path, err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(raw[:]) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("server key: cannot write %s: %w", path, err)
	}
	return raw[:], nil
}

func readServerKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("server key: %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("server key: %s is accessible by group or others (mode %04o); run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("server key: %w", err)
	}
	b, err := decodeServerKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("server key: %s %w", path, err)
	}
	return b, nil
}
