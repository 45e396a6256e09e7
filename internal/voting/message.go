package voting

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// MaxMessageSize bounds a queue message. A vote is well under 200 bytes; anything larger is
// not a vote and goes to the dead letters undecoded.
const MaxMessageSize = 4096

// message is the queue's wire format: JSON with the vote's fields, and the trace context
// when tracing is on. Fields that a newer version adds are ignored by older workers.
type message struct {
	VoterID     string `json:"voter_id"`
	Vote        string `json:"vote"`
	At          string `json:"at"`
	TraceParent string `json:"traceparent,omitempty"`
}

// EncodeMessage returns the queue message for v.
func EncodeMessage(v Vote) []byte {
	b, _ := json.Marshal(message{VoterID: v.VoterID, Vote: v.Option, At: v.At.UTC().Format(time.RFC3339Nano), TraceParent: v.TraceParent})
	return b
}

// DecodeMessage parses and validates a queue message. Its errors say what is wrong, for the
// dead letter's reason.
func DecodeMessage(b []byte) (Vote, error) {
	if len(b) > MaxMessageSize {
		return Vote{}, fmt.Errorf("message of %d bytes is over the %d byte limit", len(b), MaxMessageSize)
	}
	var m message
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&m); err != nil {
		return Vote{}, fmt.Errorf("decode message: %w", err)
	}
	if dec.More() {
		return Vote{}, fmt.Errorf("decode message: data after the JSON object")
	}
	at, err := time.Parse(time.RFC3339Nano, m.At)
	if err != nil {
		return Vote{}, fmt.Errorf("decode message: at: %w", err)
	}
	// A trace context is only carried along; one that is not sane is dropped rather than
	// failing a good vote.
	tp := m.TraceParent
	if len(tp) > 128 {
		tp = ""
	}
	v := Vote{VoterID: m.VoterID, Option: m.Vote, At: at.UTC().Truncate(TimePrecision), TraceParent: tp}
	if err := v.Validate(); err != nil {
		return Vote{}, fmt.Errorf("decode message: %w", err)
	}
	return v, nil
}
