package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcpgate/mcpgate/internal/config"
	"github.com/mcpgate/mcpgate/internal/ratelimit"
)

// redisStartTimeout bounds the start-up check that Redis answers.
const redisStartTimeout = 5 * time.Second

// openRedis connects to --redis-url when set (nil, nil when not): an
// unreachable Redis is a start-up error, not a server that later refuses
// every login.
func openRedis(ctx context.Context, cfg config.Config, log *slog.Logger) (*redis.Client, error) {
	if cfg.RedisURL == "" {
		return nil, nil
	}
	redis.SetLogger(redisLog{log}) // process-wide; stored atomically
	ctx, cancel := context.WithTimeout(ctx, redisStartTimeout)
	defer cancel()
	c, err := ratelimit.DialRedis(ctx, cfg.RedisURL)
	if err != nil {
		return nil, fmt.Errorf("--redis-url: %w", err)
	}
	return c, nil
}

// limiter returns the rate limiter named name, allowing burst events at
// once and one more every `every` per key. With --redis-url it is shared
// by every node through Redis (one client; name is the limiter's key
// namespace, so give each limiter its own); otherwise it lives in this
// process. Every limiter the server builds comes from here.
func (s *Server) limiter(name string, every time.Duration, burst int) ratelimit.Limiter {
	if s.redis == nil {
		return ratelimit.NewMemory(every, burst, 0)
	}
	return ratelimit.NewRedis(s.redis, name, every, burst)
}

// redisLog sends the Redis client's own messages (failed dials, pool
// trouble) to the server's log instead of bare lines on stderr.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}
