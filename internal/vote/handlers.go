package vote

import (
	"errors"
	"fmt"
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"

	"github.com/votingapp/voting/internal/telemetry"
	"github.com/votingapp/voting/internal/voting"
	"github.com/votingapp/voting/internal/web"
)

// maxBody bounds a vote request. A form or JSON vote is a few dozen bytes; 1 KiB leaves room
// for clients that add fields, and refuses anything that is not a vote.
const maxBody = 1 << 10

func (s *Service) servePage(w http.ResponseWriter, r *http.Request) {
	s.setVoterCookie(w, r, s.voterOf(r))
	choice := ""
	if c, err := r.Cookie(choiceCookie); err == nil && s.cfg.Options.Has(c.Value) {
		choice = c.Value
	}
	s.render(w, r, http.StatusOK, pageData{Choice: choice})
}

func (s *Service) render(w http.ResponseWriter, r *http.Request, status int, d pageData) {
	b, ok := s.pages[d.Choice]
	if d.Drills = s.cfg.Faults.Notices(); d.Error != "" || !ok || d.Drills != nil {
		b = s.renderPage(d)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store") // the page shows this browser's own vote
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// handleForm takes `vote=<option id>` as a form, as the original app and its seed data
// (`ab -p posta -T application/x-www-form-urlencoded`) send it, and answers with the page
// showing the choice, as the original does.
func (s *Service) handleForm(w http.ResponseWriter, r *http.Request) {
	v := s.voterOf(r)
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	err := r.ParseForm()
	var tooBig *http.MaxBytesError
	if err != nil && !errors.As(err, &tooBig) {
		err = fmt.Errorf("%w: %v", web.ErrBadRequest, err)
	}
	option := r.PostForm.Get("vote")
	if err == nil {
		_, err = s.cast(r, &v, option)
	}
	s.setVoterCookie(w, r, v)
	if err != nil {
		if status, msg := s.reject(err); status == http.StatusBadRequest {
			// A person sees the page again with the message, not a bare error.
			s.render(w, r, status, pageData{Error: msg})
		} else {
			web.Error(w, r, s.log, err, false)
		}
		return
	}
	setCookie(w, r, choiceCookie, option)
	s.render(w, r, http.StatusOK, pageData{Choice: option})
}

// apiVote is the answer to POST /api/vote. The request body has the vote alone: the voter
// is the voter_id cookie's, so a client cannot vote in another voter's name. The answer
// names the voter id, which is not a credential (only the signed cookie is).
type apiVote struct {
	Vote    string `json:"vote"`
	VoterID string `json:"voter_id"`
}

// handleAPI takes {"vote":"a"} and answers 202 with the voter id and the vote: accepted
// means queued, not yet counted.
func (s *Service) handleAPI(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Vote string `json:"vote"`
	}
	who := s.voterOf(r)
	err := web.DecodeJSON(w, r, &in, maxBody)
	var v voting.Vote
	if err == nil {
		v, err = s.cast(r, &who, in.Vote)
	}
	s.setVoterCookie(w, r, who)
	if err != nil {
		s.reject(err)
		web.Error(w, r, s.log, err, true)
		return
	}
	setCookie(w, r, choiceCookie, v.Option)
	web.WriteJSON(w, http.StatusAccepted, apiVote{Vote: v.Option, VoterID: v.VoterID})
}

func (s *Service) serveOptions(w http.ResponseWriter, _ *http.Request) {
	web.WriteJSON(w, http.StatusOK, map[string]any{"options": s.cfg.Options})
}

// cast validates the choice and publishes it as voter's vote, stamped by s.stamp; once it
// is queued, voter carries the new stamp for the cookie. Nothing is published for an
// invalid choice.
func (s *Service) cast(r *http.Request, voter *voter, option string) (voting.Vote, error) {
	if option == "" {
		return voting.Vote{}, voting.ErrMissingVote
	}
	if !s.cfg.Options.Has(option) {
		return voting.Vote{}, voting.ErrInvalidOption
	}
	if err := s.injectFaults(r.Context()); err != nil {
		return voting.Vote{}, err
	}
	ctx, span := s.cfg.Tracer.Start(r.Context(), "publish vote", s.publishSpan...)
	defer span.End()
	if span.IsRecording() { // the attribute costs allocations on every vote even when tracing is off
		span.SetAttributes(attribute.String("voting.option", option))
	}
	v := voting.Vote{VoterID: voter.id, Option: option, At: s.stamp(*voter), TraceParent: telemetry.InjectTraceParent(ctx)}
	if err := s.pub.Publish(ctx, v); err != nil {
		span.SetStatus(codes.Error, err.Error())
		// Whatever the queue's error, the vote was not taken: the client should retry.
		s.publishErrors.Inc()
		return voting.Vote{}, fmt.Errorf("publish vote: %w: %w", voting.ErrUnavailable, err)
	}
	s.accepted.WithLabelValues(option).Inc()
	voter.last, voter.dirty = v.At.UnixMicro(), true
	return v, nil
}

// reject counts a refused vote by reason and returns the status and message for it.
func (s *Service) reject(err error) (int, string) {
	status, msg := web.ErrorStatus(err)
	reason := "error"
	switch status {
	case http.StatusBadRequest:
		reason = "invalid"
	case http.StatusRequestEntityTooLarge:
		reason = "too_large"
	case http.StatusServiceUnavailable:
		reason = "unavailable"
	}
	s.rejected.WithLabelValues(reason).Inc()
	return status, msg
}
