package apikeys

import (
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"hash/crc32"
)

// Format constants.
const (
	// KeyPrefix starts every key.
	KeyPrefix = "mcpg_"
	// KeyLen is the length of every key in bytes (all ASCII).
	KeyLen = len(KeyPrefix) + bodyLen + checksumLen
	// DisplayPrefixLen is how many leading characters of a key are stored
	// and shown (store.APIKey.Prefix).
	DisplayPrefixLen = len(KeyPrefix) + 7

	bodyLen     = 43 // base62 digits of a 256-bit number
	checksumLen = 6  // base62 digits of a 32-bit number
	randomBytes = 32
)

// ErrMalformed: the string is not an mcpgate API key (wrong prefix or
// length, a character outside base62, or a checksum mismatch). Parse and
// Verify return errors that match it with errors.Is; their text says which
// check failed and never repeats the input.
var ErrMalformed = errors.New("apikeys: malformed key")

// Pre-built errors, so rejecting garbage allocates nothing.
var (
	errLength   = wrapMalformed("wrong length")
	errPrefix   = wrapMalformed("wrong prefix")
	errAlphabet = wrapMalformed("character outside base62")
	errRange    = wrapMalformed("body out of range")
	errChecksum = wrapMalformed("checksum mismatch")
)

// base62Digits is the key alphabet, in ASCII order.
const base62Digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

type malformedError struct{ reason string }

func (e *malformedError) Error() string { return ErrMalformed.Error() + ": " + e.reason }
func (e *malformedError) Unwrap() error { return ErrMalformed }

func wrapMalformed(reason string) error { return &malformedError{reason: reason} }

// base62Value maps an ASCII byte to its digit value, or 0xff.
var base62Value = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(base62Digits); i++ {
		t[base62Digits[i]] = byte(i)
	}
	return t
}()

// maxBody is the base62 body of 2^256-1. The alphabet is in ASCII order, so
// for equal-length bodies a string comparison is a numeric comparison.
var maxBody = func() string {
	var b [randomBytes]byte
	for i := range b {
		b[i] = 0xff
	}
	var out [bodyLen]byte
	encodeBody(&out, b)
	return string(out[:])
}()

// Generate returns a new random key. It never fails: crypto/rand.Read does
// not return errors (Go 1.24+) and aborts the program if the system's
// random source is broken.
func Generate() string {
	var random [randomBytes]byte
	_, _ = rand.Read(random[:])
	return format(random)
}

// format builds the key for 32 random bytes.
func format(random [randomBytes]byte) string {
	var k [KeyLen]byte
	copy(k[:], KeyPrefix)
	var body [bodyLen]byte
	encodeBody(&body, random)
	copy(k[len(KeyPrefix):], body[:])
	sum := crc32String(string(k[:len(KeyPrefix)+bodyLen]))
	for i := KeyLen - 1; i >= len(KeyPrefix)+bodyLen; i-- {
		k[i] = base62Digits[sum%62]
		sum /= 62
	}
	return string(k[:])
}

// encodeBody writes the big-endian number n in base62, most significant
// digit first, left-padded with '0'.
func encodeBody(out *[bodyLen]byte, n [randomBytes]byte) {
	for i := bodyLen - 1; i >= 0; i-- {
		// Long division of n by 62; the remainder is the next digit.
		var rem uint32
		for j := range n {
			cur := rem<<8 | uint32(n[j])
			n[j] = byte(cur / 62)
			rem = cur % 62
		}
		out[i] = base62Digits[rem]
	}
}

// Parse reports whether s is a well-formed key: prefix, length, alphabet,
// range and checksum. It reads no database and allocates nothing. A nil
// result says nothing about whether the key exists.
func Parse(s string) error {
	if len(s) != KeyLen {
		return errLength
	}
	if s[:len(KeyPrefix)] != KeyPrefix {
		return errPrefix
	}
	var bad byte
	for i := len(KeyPrefix); i < KeyLen; i++ {
		bad |= base62Value[s[i]] & 0x80
	}
	if bad != 0 {
		return errAlphabet
	}
	if s[len(KeyPrefix):len(KeyPrefix)+bodyLen] > maxBody {
		return errRange
	}
	var sum uint64
	for i := len(KeyPrefix) + bodyLen; i < KeyLen; i++ {
		sum = sum*62 + uint64(base62Value[s[i]])
	}
	if sum != uint64(crc32String(s[:len(KeyPrefix)+bodyLen])) {
		return errChecksum
	}
	return nil
}

// Hash returns the SHA-256 of a key, the only form in which keys are stored.
func Hash(plaintext string) [32]byte {
	if len(plaintext) == KeyLen {
		// Hashing through a stack copy keeps the hot path allocation-free
		// ([]byte(s) of a 54-byte string would escape to the heap).
		var buf [KeyLen]byte
		copy(buf[:], plaintext)
		return sha256.Sum256(buf[:])
	}
	return sha256.Sum256([]byte(plaintext))
}

// DisplayPrefix returns the part of a key that is stored and shown: its
// first DisplayPrefixLen characters. It is "" for a string that is not a
// well-formed key, so garbage is never echoed.
func DisplayPrefix(plaintext string) string {
	if Parse(plaintext) != nil {
		return ""
	}
	return plaintext[:DisplayPrefixLen]
}

// crcTables are the slicing-by-8 tables for the IEEE polynomial, so that
// the checksum of a string is computed without copying it to a []byte
// (hash/crc32 would make the copy escape) and without a byte-at-a-time loop.
var crcTables = func() (t [8][256]uint32) {
	t[0] = *crc32.IEEETable
	for i := range 256 {
		crc := t[0][i]
		for j := 1; j < 8; j++ {
			crc = t[0][crc&0xff] ^ crc>>8
			t[j][i] = crc
		}
	}
	return t
}()

// crc32String equals crc32.ChecksumIEEE([]byte(s)).
func crc32String(s string) uint32 {
	crc := ^uint32(0)
	for len(s) >= 8 {
		crc ^= uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
		crc = crcTables[0][s[7]] ^ crcTables[1][s[6]] ^ crcTables[2][s[5]] ^ crcTables[3][s[4]] ^
			crcTables[4][crc>>24] ^ crcTables[5][crc>>16&0xff] ^
			crcTables[6][crc>>8&0xff] ^ crcTables[7][crc&0xff]
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		crc = crcTables[0][byte(crc)^s[i]] ^ crc>>8
	}
	return ^crc
}
