package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"
)

// redisLogger sends go-redis's own messages (dial failures during an outage, mostly) to the
// structured log at debug level: readiness and the service's own errors already report an
// outage once, at the right level.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}

// quietRedis routes go-redis's logger, which is global to the library, through log.
func quietRedis(log *slog.Logger) { redis.SetLogger(redisLogger{log}) }
