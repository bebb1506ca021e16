package ratelimit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// CallTimeout bounds one Allow on Redis: a hung or slow Redis turns into
// an error (and the caller's fail-closed answer) instead of a hung login.
const CallTimeout = 250 * time.Millisecond

// KeyPrefix starts every key Redis limiters write: mcpgate:rl:<name>:<hash>.
const KeyPrefix = "mcpgate:rl:"

// gcra is the generic cell rate algorithm (the token bucket of Memory, kept
// as one number): a key's "theoretical arrival time" (TAT) is when its
// bucket would be full again. An event is allowed when, after adding one
// interval to the TAT, the TAT is at most burst intervals ahead of now;
// a refusal writes nothing, so it takes no token. The script runs
// atomically in Redis, so every node spends from the one budget per key.
// Times are integer microseconds; "now" is the Redis server's clock (one
// clock for every node) unless ARGV[3] gives one (tests). The key expires
// a second after the bucket is full again: forgetting it then changes
// nothing (a TAT in the past counts as now), and the second keeps a
// short interval's key from vanishing between two calls on a slow or
// test clock that does not follow Redis's.
//
// KEYS[1] the key; ARGV[1] the interval (µs); ARGV[2] the burst;
// ARGV[3] now (µs) or "". Returns {1, 0} when allowed, else {0, wait µs}.
var gcra = redis.NewScript(`
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
if not now then
  local t = redis.call("TIME")
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local tat = tonumber(redis.call("GET", KEYS[1]) or now)
if tat < now then
  tat = now
end
local new_tat = tat + interval
local wait = new_tat - burst * interval - now
if wait > 0 then
  return {0, wait}
end
redis.call("SET", KEYS[1], string.format("%d", new_tat), "PX", math.ceil((new_tat - now) / 1000) + 1000)
return {1, 0}
`)

// Redis is a limiter shared by every mcpgate node using the same Redis:
// the same token bucket per key as Memory (burst events at once, one more
// every `every`; RetryAfter when refused), kept in Redis by an atomic Lua
// script (GCRA). Keys are namespaced by the limiter's name and hashed, so
// emails and addresses are not stored in clear and a key's length is
// bounded. An error (Redis down, slower than CallTimeout) is returned for
// the caller to fail closed. Safe for concurrent use.
type Redis struct {
	client   redis.Scripter
	name     string
	interval time.Duration
	burst    int
	timeout  time.Duration
	now      func() time.Time // nil: the Redis server's clock
}

var _ Limiter = (*Redis)(nil)

// NewRedis returns a limiter named name (its key namespace: give each
// limiter its own) allowing burst events at once and one more every
// `every` (every <= 0: no limit, Redis is not asked). It panics on an
// empty name or one holding ':' (a wiring mistake).
func NewRedis(client redis.Scripter, name string, every time.Duration, burst int) *Redis {
	if name == "" || strings.Contains(name, ":") {
		panic(fmt.Sprintf("ratelimit.NewRedis: invalid limiter name %q", name))
	}
	if every > 0 {
		every = max(every, time.Microsecond) // the script counts whole microseconds
	}
	return &Redis{client: client, name: name, interval: every, burst: max(burst, 1), timeout: CallTimeout}
}

// Allow takes one token from key's bucket if there is one. When there is
// none, nothing is taken and RetryAfter says when one will be there.
func (l *Redis) Allow(ctx context.Context, key string) (Decision, error) {
	if l.interval <= 0 {
		return Decision{Allowed: true}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	now := ""
	if l.now != nil {
		now = fmt.Sprint(l.now().UnixMicro())
	}
	res, err := gcra.Run(ctx, l.client, []string{l.key(key)}, l.interval.Microseconds(), l.burst, now).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("ratelimit: redis limiter %s: %w", l.name, err)
	}
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("ratelimit: redis limiter script answered %v", res)
	}
	if res[0] == 1 {
		return Decision{Allowed: true}, nil
	}
	// Up to the next millisecond, like Memory.
	wait := time.Duration(res[1]) * time.Microsecond
	return Decision{RetryAfter: (wait + time.Millisecond - 1).Truncate(time.Millisecond)}, nil
}

// key is the Redis key of a caller's key: hashed, since callers pass
// emails and addresses (user input of any length).
func (l *Redis) key(k string) string {
	sum := sha256.Sum256([]byte(k))
	return KeyPrefix + l.name + ":" + base64.RawURLEncoding.EncodeToString(sum[:])
}

// DialRedis connects to the Redis at rawURL (redis://[user:password@]host:port/db
// or rediss:// for TLS) and checks that it answers within ctx. Commands
// are bounded by their context (Allow gives each CallTimeout). Errors
// never carry the password.
func DialRedis(ctx context.Context, rawURL string) (*redis.Client, error) {
	opts, err := ParseRedisURL(rawURL)
	if err != nil {
		return nil, err
	}
	client := newRedisClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %s", RedactRedisURL(rawURL), redactPassword(rawURL, err.Error()))
	}
	return client, nil
}

// newRedisClient makes each command's context deadline govern dials,
// pool waits, reads and writes: Allow's CallTimeout is then the most a
// hung Redis costs a request.
func newRedisClient(opts *redis.Options) *redis.Client {
	opts.ContextTimeoutEnabled = true
	return redis.NewClient(opts)
}

// ParseRedisURL parses a redis:// or rediss:// URL into client options.
// Its errors never carry the password.
func ParseRedisURL(rawURL string) (*redis.Options, error) {
	if !strings.HasPrefix(rawURL, "redis://") && !strings.HasPrefix(rawURL, "rediss://") {
		return nil, fmt.Errorf("%s: must start with redis:// or rediss:// (TLS)", RedactRedisURL(rawURL))
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil:
		// url.Parse errors quote the input, password included.
		return nil, errors.New("malformed URL (special characters in the password must be percent-encoded)")
	case u.Hostname() == "":
		return nil, fmt.Errorf("%s: must name a host, as in redis://127.0.0.1:6379/0", RedactRedisURL(rawURL))
	}
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("%s: %s", RedactRedisURL(rawURL), redactPassword(rawURL, err.Error()))
	}
	return opts, nil
}

// RedactRedisURL returns rawURL with its password replaced by "xxxxx", for
// logs and errors.
func RedactRedisURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(malformed Redis URL)"
	}
	return u.Redacted()
}

// redactPassword removes rawURL's password from msg (error texts of the
// client library may quote what they were given).
func redactPassword(rawURL, msg string) string {
	if u, err := url.Parse(rawURL); err == nil && u.User != nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			msg = strings.ReplaceAll(msg, pw, "xxxxx")
		}
	}
	return msg
}
