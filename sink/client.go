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
	"net/url"
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
	// shownURL is url as shown in errors: a password in it is masked.
	shownURL string
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
	c := &Client{
		cfg:  cfg,
		url:  strings.TrimRight(cfg.BaseURL, "/") + "/apps/" + cfg.AppID + "/custom_events",
		auth: "Key " + cfg.APIKey,
		http: hc,
	}
	c.shownURL = c.url
	if u, err := url.Parse(c.url); err == nil {
		c.shownURL = u.Redacted()
	}
	return c
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
	// Retry: network errors, time-outs, 5xx, 429 and answers that are not
	// OneSignal's (UnexpectedAnswerError); retry the whole batch.
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
		// Network errors, time-outs and *UnexpectedAnswerError.
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
// answer arrives, ctx ends or the time-out passes. It returns a nil error
// only for a 2xx answer whose body is OneSignal's JSON ({} or per-event
// errors); a 2xx or 400 with any other body is an *UnexpectedAnswerError,
// another non-2xx a *StatusError.
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
		res, ok := parseAccepted(data)
		if !ok {
			return Result{}, c.unexpected(resp, data)
		}
		return res, nil
	}
	if resp.StatusCode == http.StatusBadRequest && !isErrorsBody(data) {
		// Not OneSignal refusing the events (a proxy, a web server): the
		// batch must neither be split nor dead-lettered.
		return Result{}, c.unexpected(resp, data)
	}
	se := &StatusError{Status: resp.StatusCode, Errors: parseErrors(data)}
	for i := range se.Errors {
		se.Errors[i] = c.scrubKey(se.Errors[i])
	}
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

// parseAccepted reads the body of a 2xx answer. It reports false unless the
// body is one of OneSignal's documented answers: {} or {"errors":[...]} whose
// items each name an event's user and its error, e.g.
// {"event_user_id":"u","event_id":"e","error":{"code":"not found","title":"..."}}.
// Anything else (an HTML page, a truncated body, another API's JSON) proves
// nothing about the events.
func parseAccepted(data []byte) (Result, bool) {
	if string(bytes.TrimSpace(data)) == "{}" {
		return Result{}, true // the common answer, without decoding
	}
	var top map[string]json.RawMessage
	if !isObject(data) || json.Unmarshal(data, &top) != nil {
		return Result{}, false
	}
	for k := range top {
		if k != "errors" {
			return Result{}, false
		}
	}
	raw, ok := top["errors"]
	if !ok {
		return Result{}, true
	}
	var items []json.RawMessage
	if !isArray(raw) || json.Unmarshal(raw, &items) != nil {
		return Result{}, false
	}
	var r Result
	for _, item := range items {
		var e struct {
			EventUserID *string `json:"event_user_id"`
			EventID     *string `json:"event_id"`
			Error       *struct {
				Code  *string `json:"code"`
				Title *string `json:"title"`
			} `json:"error"`
		}
		if !isObject(item) || json.Unmarshal(item, &e) != nil || e.EventUserID == nil || e.Error == nil ||
			e.Error.Code == nil && e.Error.Title == nil {
			return Result{}, false
		}
		ee := EventError{ExternalID: *e.EventUserID}
		if e.EventID != nil {
			ee.EventID = *e.EventID
		}
		if e.Error.Code != nil {
			ee.Code = *e.Error.Code
		}
		if e.Error.Title != nil {
			ee.Title = *e.Error.Title
		}
		r.Failed = append(r.Failed, ee)
	}
	return r, true
}

// isObject reports whether data is a JSON object (whitespace aside); it
// does not validate it.
func isObject(data []byte) bool {
	d := bytes.TrimSpace(data)
	return len(d) >= 2 && d[0] == '{' && d[len(d)-1] == '}'
}

// isArray reports whether data is a JSON array (whitespace aside); it does
// not validate it.
func isArray(data []byte) bool {
	d := bytes.TrimSpace(data)
	return len(d) >= 2 && d[0] == '[' && d[len(d)-1] == ']'
}

// isErrorsBody reports whether data is OneSignal's error body: a JSON object
// with an "errors" array.
func isErrorsBody(data []byte) bool {
	var body struct {
		Errors json.RawMessage `json:"errors"`
	}
	return isObject(data) && json.Unmarshal(data, &body) == nil && isArray(body.Errors)
}

// UnexpectedAnswerError is an answer that is not OneSignal's: a 2xx or a 400
// whose body is not OneSignal's JSON, as a web site, a proxy or a captive
// portal at onesignal.url would give. It proves nothing about the events:
// the request failed and is retried (Classify returns Retry), since it can
// succeed once onesignal.url or the proxy is fixed.
type UnexpectedAnswerError struct {
	// URL is the request's URL, any password in it masked.
	URL string
	// Status is the HTTP status code.
	Status int
	// ContentType is the Content-Type header, "" when absent.
	ContentType string
	// Body is the start of the body, valid UTF-8, with the API key masked.
	Body string
}

func (e *UnexpectedAnswerError) Error() string {
	return e.Answer() + ", which is not OneSignal's JSON answer; onesignal.url must be OneSignal's API (https://api.onesignal.com) or a proxy that forwards to it unchanged"
}

// Answer says what came back, e.g. `https://x/apps/a/custom_events answered
// 200 (text/html, body "<html>…")`.
func (e *UnexpectedAnswerError) Answer() string {
	ct := e.ContentType
	if ct == "" {
		ct = "no content type"
	}
	body := "an empty body"
	if e.Body != "" {
		body = fmt.Sprintf("body %q", e.Body)
	}
	return fmt.Sprintf("%s answered %d (%s, %s)", e.URL, e.Status, ct, body)
}

// unexpected builds the error for an answer that is not OneSignal's.
func (c *Client) unexpected(resp *http.Response, data []byte) error {
	return &UnexpectedAnswerError{URL: c.shownURL, Status: resp.StatusCode,
		ContentType: c.scrubKey(strings.ToValidUTF8(resp.Header.Get("Content-Type"), "\uFFFD")),
		Body:        c.scrubKey(snippet(string(data), 200))}
}

// scrubKey masks the API key in s: a server may echo the request's headers.
func (c *Client) scrubKey(s string) string {
	if len(c.cfg.APIKey) >= 4 {
		s = strings.ReplaceAll(s, c.cfg.APIKey, "REDACTED")
	}
	return s
}

// snippet returns the start of s, at most max bytes cut at a rune start,
// trimmed and made valid UTF-8, with "…" when cut.
func snippet(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		cut := max
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// parseErrors reads {"errors":[...]} where items are strings or {code,title}.
func parseErrors(data []byte) []string {
	var body struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if json.Unmarshal(data, &body) != nil {
		if s := snippet(string(data), 200); s != "" {
			return []string{s}
		}
		return nil
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
