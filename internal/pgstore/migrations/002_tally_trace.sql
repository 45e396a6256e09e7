-- 002_tally_trace: the trace context of the newest traced vote recorded, so that the result
-- service's push of a tally joins that vote's trace (POST, queue, worker, commit, push). One
-- row at most; written in the worker's transaction only when tracing is on.
CREATE TABLE tally_trace (
    id          boolean PRIMARY KEY DEFAULT true CHECK (id),
    traceparent text NOT NULL
);
