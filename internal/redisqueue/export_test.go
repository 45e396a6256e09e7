package redisqueue

import "context"

// PublishRaw adds body to the stream as it is, valid or not, for the tests of what the
// consumers do with malformed entries.
func (q *Queue) PublishRaw(ctx context.Context, body []byte) error { return q.publish(ctx, body) }
