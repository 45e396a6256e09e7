-- 002_tally_trace: the trace context of the newest traced vote recorded, as in the
-- PostgreSQL store. One row at most.
CREATE TABLE tally_trace (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    traceparent TEXT NOT NULL
) STRICT;
