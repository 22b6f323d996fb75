package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxBodyBytes is the largest request body OneSignal accepts.
const MaxBodyBytes = 1 << 20

// bodyOverhead is the size of `{"events":[` + `]}`.
const bodyOverhead = len(`{"events":[]}`)

// ClientConfig configures a Client.
type ClientConfig struct {
	// BaseURL is OneSignal's API base (default https://api.onesignal.com).
	BaseURL string
	AppID   string
	// APIKey is the App API key. It is sent in the Authorization header and
	// never logged.
	APIKey string
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// HTTPClient overrides the transport (tests).
	HTTPClient *http.Client
}

// Client sends batches of custom events to OneSignal. It does not retry: it
// classifies each outcome so that the sink can.
type Client struct {
	cfg  ClientConfig
	url  string
	auth string
	http *http.Client
}

// NewClient returns a client.
func NewClient(cfg ClientConfig) *Client {
	if cfg.BaseURL == "" {
		cfg.BaseURL = "https://api.onesignal.com"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	hc := cfg.HTTPClient
	if hc == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64
		tr.ResponseHeaderTimeout = cfg.Timeout
		hc = &http.Client{Transport: tr}
	}
	return &Client{
		cfg:  cfg,
		url:  strings.TrimRight(cfg.BaseURL, "/") + "/apps/" + cfg.AppID + "/custom_events",
		auth: "Key " + cfg.APIKey,
		http: hc,
	}
}

// EventError is a per-event failure reported in a 202 response.
type EventError struct {
	ExternalID string
	EventID    string
	Code       string
	Title      string
}

// Result is the outcome of a request OneSignal accepted (2xx).
type Result struct {
	// Failed lists the per-event errors; events not listed were processed.
	Failed []EventError
}

// StatusError is a non-2xx answer.
type StatusError struct {
	Status     int
	Errors     []string
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("OneSignal answered %d", e.Status)
	if len(e.Errors) > 0 {
		msg += ": " + strings.Join(e.Errors, "; ")
	}
	return msg
}

// Kind classifies a failed request.
type Kind int

// Kinds of failure.
const (
	// Retry: network errors, time-outs, 5xx and 429; retry the whole batch.
	Retry Kind = iota
	// BadRequest: 400 (or 413): the batch holds an event OneSignal refuses.
	BadRequest
	// Unauthorized: 401/403, the API key was refused; stop.
	Unauthorized
	// Fatal: any other answer (e.g. 404 for a wrong app id); stop.
	Fatal
)

// Classify tells what to do about err returned by Send.
func Classify(err error) Kind {
	var se *StatusError
	if !errors.As(err, &se) {
		return Retry
	}
	switch {
	case se.Status == 429 || se.Status >= 500:
		return Retry
	case se.Status == 400 && mentionsAppID(se.Errors):
		// "app_id not found": the configuration is wrong, not the events.
		return Fatal
	case se.Status == 400 || se.Status == 413:
		return BadRequest
	case se.Status == 401 || se.Status == 403:
		return Unauthorized
	default:
		return Fatal
	}
}

// RetryAfter returns the server's requested wait, if any.
func RetryAfter(err error) time.Duration {
	var se *StatusError
	if errors.As(err, &se) {
		return se.RetryAfter
	}
	return 0
}

// Send posts one request body (built with AppendBody). It blocks until the
// answer arrives, ctx ends or the time-out passes.
func (c *Client) Send(ctx context.Context, body []byte) (Result, error) {
	if len(body) > MaxBodyBytes {
		// Not sent: classified like OneSignal's 413, so the batch is split
		// and an event that alone is too large becomes a dead letter.
		return Result{}, &StatusError{Status: 413, Errors: []string{fmt.Sprintf("request body of %d bytes exceeds OneSignal's %d-byte limit (not sent)", len(body), MaxBodyBytes)}}
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return Result{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("post custom events: %w", scrubURLError(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Result{}, fmt.Errorf("read response (%d): %w", resp.StatusCode, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return parseAccepted(data), nil
	}
	se := &StatusError{Status: resp.StatusCode, Errors: parseErrors(data)}
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		if secs, err := strconv.Atoi(strings.TrimSpace(ra)); err == nil && secs >= 0 {
			se.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(ra); err == nil {
			se.RetryAfter = time.Until(t)
		}
	}
	return Result{}, se
}

// scrubURLError keeps the cause of a transport error; the URL holds no
// secret, but the error text stays short.
func scrubURLError(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Errorf("timed out: %w", err)
	}
	return err
}

func parseAccepted(data []byte) Result {
	var body struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if len(bytes.TrimSpace(data)) == 0 || json.Unmarshal(data, &body) != nil {
		return Result{}
	}
	var r Result
	for _, raw := range body.Errors {
		var e struct {
			EventUserID string `json:"event_user_id"`
			EventID     string `json:"event_id"`
			Error       struct {
				Code  string `json:"code"`
				Title string `json:"title"`
			} `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil {
			continue
		}
		r.Failed = append(r.Failed, EventError{ExternalID: e.EventUserID, EventID: e.EventID, Code: e.Error.Code, Title: e.Error.Title})
	}
	return r
}

// parseErrors reads {"errors":[...]} where items are strings or {code,title}.
func parseErrors(data []byte) []string {
	var body struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(data, &body) != nil {
		s := strings.TrimSpace(string(data))
		if len(s) > 200 {
			cut := 200
			for cut > 0 && !utf8.RuneStart(s[cut]) {
				cut--
			}
			s = s[:cut] + "…"
		}
		s = strings.ToValidUTF8(s, "\uFFFD")
		if s == "" {
			return nil
		}
		return []string{s}
	}
	var out []string
	for _, raw := range body.Errors {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			out = append(out, s)
			continue
		}
		var o struct{ Code, Title string }
		if json.Unmarshal(raw, &o) == nil && (o.Code != "" || o.Title != "") {
			out = append(out, strings.TrimSpace(o.Code+": "+o.Title))
			continue
		}
		out = append(out, string(raw))
	}
	return out
}

// AppendBody appends a request body holding the given serialized events.
func AppendBody(dst []byte, events [][]byte) []byte {
	dst = append(dst, `{"events":[`...)
	for i, e := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, e...)
	}
	return append(dst, "]}"...)
}

// mentionsAppID reports whether a 400's errors are about the app id rather
// than an event.
func mentionsAppID(errs []string) bool {
	for _, e := range errs {
		l := strings.ToLower(e)
		if strings.Contains(l, "app_id") || strings.Contains(l, "app id") {
			return true
		}
	}
	return false
}
