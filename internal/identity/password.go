package identity

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password rules (NIST SP 800-63B §3.1.1.2): a minimum length, a maximum that
// bounds hashing cost, and no composition rules.
const (
	MinPasswordRunes = 12
	MaxPasswordBytes = 1024
)

// argon2id parameters: the OWASP Password Storage Cheat Sheet's first
// recommended configuration (m=19 MiB, t=2, p=1).
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonSaltLen   = 16
	argonKeyLen    = 32
)

// ErrPasswordMismatch: the password does not match the hash.
var ErrPasswordMismatch = errors.New("password does not match")

// CheckPasswordPolicy returns a readable reason when pw is not acceptable.
func CheckPasswordPolicy(pw string) error {
	if len(pw) > MaxPasswordBytes {
		return fmt.Errorf("password is too long: at most %d bytes", MaxPasswordBytes)
	}
	if !utf8.ValidString(pw) {
		return errors.New("password is not valid UTF-8 text")
	}
	if utf8.RuneCountInString(pw) < MinPasswordRunes {
		return fmt.Errorf("password is too short: at least %d characters", MinPasswordRunes)
	}
	return nil
}

// HashPassword returns the argon2id PHC string for pw:
// $argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash> (unpadded standard base64).
func HashPassword(pw string) string {
	salt := make([]byte, argonSaltLen)
	rand.Read(salt)
	key := argon2.IDKey([]byte(pw), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// VerifyPassword checks pw against a PHC string made by HashPassword (or
// with other, bounded, argon2id parameters). Comparison is constant-time.
func VerifyPassword(phc, pw string) error {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return errors.New("unsupported password hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("unsupported argon2 version")
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return errors.New("malformed argon2id parameters")
	}
	// Bound the work a stored hash can ask for.
	if m < 8*1024 || m > 1<<20 || t < 1 || t > 10 || p < 1 || p > 16 {
		return errors.New("argon2id parameters out of bounds")
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 {
		return errors.New("malformed argon2id salt or hash")
	}
	got := argon2.IDKey([]byte(pw), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrPasswordMismatch
	}
	return nil
}

// GeneratePassword returns a random 20-character password from an
// unambiguous alphabet (for demo users and admin resets).
func GeneratePassword() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	b := make([]byte, 20)
	for i := range b {
		b[i] = alphabet[randIntn(len(alphabet))]
	}
	return string(b)
}

func randIntn(n int) int {
	// Rejection sampling over a byte keeps the distribution uniform.
	limit := 256 - 256%n
	var buf [1]byte
	for {
		rand.Read(buf[:])
		if int(buf[0]) < limit {
			return int(buf[0]) % n
		}
	}
}
