package web

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
)

// ErrorStatus maps an error to the status and the message a client may see. Domain errors
// carry safe texts; anything else is an internal error whose text stays in the log.
func ErrorStatus(err error) (int, string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, voting.ErrInvalidOption), errors.Is(err, voting.ErrMissingVote),
		errors.Is(err, voting.ErrInvalidVoter), errors.Is(err, voting.ErrInvalidTime),
		errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, err.Error()
	case errors.As(err, &tooBig):
		return http.StatusRequestEntityTooLarge, "request body too large"
	case errors.Is(err, voting.ErrUnavailable):
		return http.StatusServiceUnavailable, voting.ErrUnavailable.Error() + ", please retry"
	default:
		return http.StatusInternalServerError, "internal error"
	}
}

// Error answers a failed request. Client errors get their message; server errors get a
// generic message with the request id, and the real error is logged once, here.
func Error(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error, asJSON bool) {
	status, msg := ErrorStatus(err)
	if status >= 500 {
		id := telemetry.RequestID(r.Context()) // given by Instrument
		log.ErrorContext(r.Context(), "request failed", "route", r.Pattern, "status", status, "err", err)
		msg += " (request id " + id + ")"
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if asJSON {
		WriteJSON(w, status, map[string]string{"error": msg})
		return
	}
	http.Error(w, msg, status)
}
