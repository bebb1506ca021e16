package tokens

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcpgate/mcpgate/internal/store/sqlstore"
)

func TestSealRoundTrip(t *testing.T) {
	s, err := newSealer(serverKey("one"))
	if err != nil {
		t.Fatal(err)
	}
	pt := []byte("private key bytes")
	sealed := s.seal(pt, "kid-1", "ES256")
	if bytes.Contains(sealed, pt) {
		t.Fatal("sealed form contains the plaintext")
	}
	if again := s.seal(pt, "kid-1", "ES256"); bytes.Equal(again, sealed) {
		t.Error("two seals of the same key are identical (nonce reuse)")
	}
	got, err := s.open(sealed, "kid-1", "ES256")
	if err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("open = %q, %v", got, err)
	}
	// Bound to its key id and algorithm: a sealed key moved to another
	// row does not open.
	for _, tc := range []struct{ kid, alg string }{{"kid-2", "ES256"}, {"kid-1", "RS256"}} {
		if _, err := s.open(sealed, tc.kid, tc.alg); !errors.Is(err, ErrWrongServerKey) {
			t.Errorf("open as %s/%s = %v, want a refusal", tc.kid, tc.alg, err)
		}
	}
	other, _ := newSealer(serverKey("two"))
	if _, err := other.open(sealed, "kid-1", "ES256"); !errors.Is(err, ErrWrongServerKey) {
		t.Errorf("open with another server key = %v, want ErrWrongServerKey", err)
	}
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	if _, err := s.open(flipped, "kid-1", "ES256"); err == nil {
		t.Error("a tampered ciphertext opened")
	}
	if _, err := s.open(sealed[:10], "kid-1", "ES256"); err == nil {
		t.Error("a truncated ciphertext opened")
	}
	if _, err := newSealer(make([]byte, 31)); err == nil {
		t.Error("a 31-byte server key was accepted")
	}
}

// TestWrongServerKey: a node started with another server key than the one
// that created the keys refuses to start, with an error that says why,
// instead of creating keys of its own.
func TestWrongServerKey(t *testing.T) {
	st := sqliteStore(t)
	clk := &clock{now: t0}
	newIssuer(t, st, clk)
	_, err := NewIssuer(t.Context(), st, serverKey("another key"), Options{Issuer: testIssuer, Now: clk.Now, Logger: quiet})
	if !errors.Is(err, ErrWrongServerKey) {
		t.Fatalf("NewIssuer with another server key = %v, want ErrWrongServerKey", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "server key") || !strings.Contains(msg, "every node") {
		t.Errorf("error %q does not tell the operator what to fix", msg)
	}
	if n := len(storedKeys(t, st)); n != 1 {
		t.Errorf("%d keys stored, want 1 (the refused node created none)", n)
	}
}

// TestNoPlaintextPrivateKeyInDatabase: neither the PKCS #8 encoding of a
// private key nor its raw scalar appears anywhere in the database files.
func TestNoPlaintextPrivateKeyInDatabase(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mcpgate.db")
	db, err := sqlstore.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	clk := &clock{now: t0}
	i := newIssuer(t, db, clk)
	clk.Add(DefaultRotateEvery)
	if err := i.Sync(t.Context()); err != nil { // a second key
		t.Fatal(err)
	}
	keys := storedKeys(t, db)
	if len(keys) != 2 {
		t.Fatalf("%d keys stored, want 2", len(keys))
	}
	var secrets [][]byte
	for _, k := range keys {
		der, err := i.seal.open(k.PrivateKey, k.ID, k.Algorithm)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			t.Fatal(err)
		}
		d, err := priv.(*ecdsa.PrivateKey).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, der, d)
	}
	db.Close()
	files, _ := filepath.Glob(path + "*") // the database, -wal, -shm
	if len(files) == 0 {
		t.Fatal("no database files")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range secrets {
			if bytes.Contains(data, s) {
				t.Errorf("%s contains private key material in plaintext", filepath.Base(f))
			}
		}
	}
}
