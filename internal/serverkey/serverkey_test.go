package serverkey

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"testing"
)

func key(fill byte) []byte { return bytes.Repeat([]byte{fill}, 32) }

func TestDeriveSeparatesPurposes(t *testing.T) {
	a, err := Derive(key(1), "purpose a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Derive(key(1), "purpose b")
	again, _ := Derive(key(1), "purpose a")
	other, _ := Derive(key(2), "purpose a")
	if bytes.Equal(a, b) || bytes.Equal(a, other) || !bytes.Equal(a, again) || len(a) != 32 {
		t.Errorf("keys: a=%x b=%x again=%x other=%x", a, b, again, other)
	}
	if _, err := Derive(make([]byte, 31), "x"); err == nil {
		t.Error("a 31-byte server key was accepted")
	}
}

func TestSealOpen(t *testing.T) {
	aead, err := NewAEAD(key(1), "test")
	if err != nil {
		t.Fatal(err)
	}
	pt, ad := []byte("verifier and nonce"), []byte("row 1")
	sealed := Seal(aead, 1, pt, ad)
	if bytes.Contains(sealed, pt) || bytes.Equal(sealed, Seal(aead, 1, pt, ad)) {
		t.Fatal("sealed form holds the plaintext, or two seals are identical (nonce reuse)")
	}
	if got, err := Open(aead, 1, sealed, ad); err != nil || !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	otherKey, _ := NewAEAD(key(2), "test")
	otherUse, _ := NewAEAD(key(1), "another use")
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, tc := range map[string]struct {
		aead    cipher.AEAD
		sealed  []byte
		version byte
		ad      []byte
		want    error
	}{
		"other server key": {otherKey, sealed, 1, ad, ErrOpen},
		"other use":        {otherUse, sealed, 1, ad, ErrOpen},
		"other row":        {aead, sealed, 1, []byte("row 2"), ErrOpen},
		"tampered":         {aead, flipped, 1, ad, ErrOpen},
		"truncated":        {aead, sealed[:10], 1, ad, ErrFormat},
		"other version":    {aead, sealed, 2, ad, ErrFormat},
	} {
		if _, err := Open(tc.aead, tc.version, tc.sealed, tc.ad); !errors.Is(err, tc.want) {
			t.Errorf("%s: Open = %v, want %v", name, err, tc.want)
		}
	}
}
