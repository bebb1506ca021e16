package store

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// idEncoding is lower-case base32 without padding: ids are case-stable,
// URL-safe and easy to read out loud.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewID returns a fresh identifier "<prefix>_<26 base32 chars>" holding 128
// random bits, e.g. "usr_…", "key_…". The prefix tells a reader what an id
// names without a lookup.
func NewID(prefix string) string {
	var b [16]byte
	rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + "_" + idEncoding.EncodeToString(b[:])
}

// ParseID splits an id made by NewID into its prefix and 16 raw bytes.
func ParseID(id string) (prefix string, raw [16]byte, ok bool) {
	prefix, enc, found := strings.Cut(id, "_")
	if !found || len(enc) != 26 {
		return "", raw, false
	}
	n, err := idEncoding.Decode(raw[:], []byte(enc))
	if err != nil || n != 16 {
		return "", raw, false
	}
	return prefix, raw, true
}

// FormatID is the inverse of ParseID.
func FormatID(prefix string, raw [16]byte) string {
	return prefix + "_" + idEncoding.EncodeToString(raw[:])
}
