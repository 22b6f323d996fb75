package onesignaltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// event is one validated event of a request.
type event struct {
	name, externalID, onesignalID string
	timestamp                     string
	keyText                       string
	key                           [16]byte
	hasKey                        bool
	props                         []byte // aliases the request body
}

// accepted returns the record of ev. Its Properties is a copy, since ev.props
// aliases the pooled request buffer.
func (ev *event) accepted(now time.Time, reqNo int) Accepted {
	return Accepted{
		Name:           ev.name,
		ExternalID:     ev.externalID,
		OnesignalID:    ev.onesignalID,
		Timestamp:      ev.timestamp,
		IdempotencyKey: ev.keyText,
		Properties:     bytes.Clone(ev.props),
		ReceivedAt:     now,
		Request:        reqNo,
	}
}

// wireEvent is one event as sent: the raw JSON value of each known field,
// nil when absent. Field names match exactly (case-sensitive); when a field
// repeats, the last one wins, as with encoding/json.
type wireEvent struct {
	Name, ExternalID, OnesignalID, Timestamp, IdempotencyKey, Properties, Payload []byte
}

// set stores the value of the field whose raw JSON key is key.
func (we *wireEvent) set(key, value []byte) {
	switch string(keyText(key)) { // no allocation: the conversion is only compared
	case "name":
		we.Name = value
	case "external_id":
		we.ExternalID = value
	case "onesignal_id":
		we.OnesignalID = value
	case "timestamp":
		we.Timestamp = value
	case "idempotency_key":
		we.IdempotencyKey = value
	case "properties":
		we.Properties = value
	case "payload":
		we.Payload = value
	}
}

// parseBody decodes and validates a request body. It returns the events, or
// the messages of a 400 answer. The events' props alias body.
//
// The body is checked once, by checkBody, which accepts what
// json.Valid(body) && utf8.Valid(body) accepts; the walk over it that
// follows relies on that and only finds the bounds of values.
func parseBody(body []byte) ([]event, []string) {
	switch checkBody(body) {
	case bodyNotJSON:
		// The answer quotes encoding/json's syntax error; json.Unmarshal
		// checks the whole body before decoding, so it is the error
		// json.Valid found.
		err := json.Unmarshal(body, new(json.RawMessage))
		return nil, []string{fmt.Sprintf("request body is not valid JSON: %v", err)}
	case bodyNotUTF8:
		// JSON syntax does not check the bytes inside strings; a body that
		// is not UTF-8 is not JSON (RFC 8259 §8.1). A body that is neither
		// gets the syntax error above.
		return nil, []string{"request body is not valid UTF-8"}
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return nil, []string{"request body must be a JSON object"}
	}
	var events []byte
	eachMember(body, i, func(key, value []byte) {
		if string(keyText(key)) == "events" {
			events = value
		}
	})
	switch {
	case events == nil:
		return nil, []string{"events is required"}
	case events[0] != '[':
		return nil, []string{"events must be an array"}
	}
	var (
		evs  []event
		errs []string
	)
	eachElement(events, func(raw []byte) {
		evs = append(evs, event{})
		errs = parseEvent(&evs[len(evs)-1], len(evs)-1, raw, errs)
	})
	if len(errs) > 0 {
		return nil, errs
	}
	return evs, nil
}

// parseEvent validates the i-th event raw into ev, appending failures to
// errs.
func parseEvent(ev *event, i int, raw []byte, errs []string) []string {
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Sprintf("events[%d]: ", i)+fmt.Sprintf(format, args...))
	}
	if raw[0] != '{' {
		fail("event must be a JSON object")
		return errs
	}
	var we wireEvent
	eachMember(raw, 0, we.set)
	if len(raw) > MaxEventBytes {
		fail("event is %d bytes, over the %d-byte limit", len(raw), MaxEventBytes)
	}

	name, isStr := decodeString(we.Name)
	switch {
	case !isStr && !isNull(we.Name):
		fail("name must be a string")
	case name == "":
		fail("name is required")
	case utf8.RuneCountInString(name) > MaxNameChars:
		fail("name must be at most %d characters", MaxNameChars)
	}
	ev.name = name

	var ok1, ok2 bool
	ev.externalID, ok1 = optionalString(we.ExternalID, "external_id", fail)
	ev.onesignalID, ok2 = optionalString(we.OnesignalID, "onesignal_id", fail)
	if ok1 && ok2 && ev.externalID == "" && ev.onesignalID == "" {
		fail("external_id or onesignal_id is required")
	}

	ts, ok := optionalString(we.Timestamp, "timestamp", fail)
	if ok && !isNull(we.Timestamp) && !validTimestamp(ts) {
		fail("timestamp %q is not an ISO 8601 date-time", ts)
	}
	ev.timestamp = ts

	if !isNull(we.IdempotencyKey) {
		key, isStr := decodeString(we.IdempotencyKey)
		uuid, ok := parseUUID(key)
		if !isStr || !ok {
			fail("idempotency_key must be a UUID")
		}
		ev.keyText, ev.key, ev.hasKey = key, uuid, ok
	}

	switch props, payload := !isNull(we.Properties), !isNull(we.Payload); {
	case props && payload:
		fail("properties and payload are mutually exclusive")
	case props:
		ev.props = objectOrFail(we.Properties, "properties", fail)
	case payload:
		ev.props = objectOrFail(we.Payload, "payload", fail)
	}
	return errs
}

// optionalString decodes an optional string field; ok is false when it was
// present and not a string (a failure was reported).
func optionalString(raw json.RawMessage, field string, fail func(string, ...any)) (s string, ok bool) {
	if isNull(raw) {
		return "", true
	}
	s, ok = decodeString(raw)
	if !ok {
		fail("%s must be a string", field)
	}
	return s, ok
}

// objectOrFail returns raw when it is a JSON object, else reports a failure.
func objectOrFail(raw json.RawMessage, field string, fail func(string, ...any)) json.RawMessage {
	if raw[0] != '{' {
		fail("%s must be a JSON object", field)
		return nil
	}
	return raw
}

// isNull reports whether a raw field is absent or null.
func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// decodeString decodes raw when it is a JSON string.
func decodeString(raw json.RawMessage) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// timestampLayouts are the ISO 8601 forms accepted; a fractional second is
// accepted after the seconds of each.
var timestampLayouts = []string{
	time.RFC3339,               // 2025-10-21T19:09:32.263Z, +02:00
	"2006-01-02T15:04:05Z0700", // +0200
	"2006-01-02T15:04:05Z07",   // +02
	"2006-01-02T15:04:05",      // local time, no zone
	"2006-01-02T15:04Z07:00",   // no seconds
	"2006-01-02T15:04",         // no seconds, no zone
	"2006-01-02",               // calendar date
}

// validTimestamp reports whether s parses as an RFC 3339 / ISO 8601
// date-time.
func validTimestamp(s string) bool {
	for _, layout := range timestampLayouts {
		if _, err := time.Parse(layout, s); err == nil {
			return true
		}
	}
	return false
}

// parseUUID parses the 8-4-4-4-12 hex form, in either case.
func parseUUID(s string) ([16]byte, bool) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := hexVal(s[i])
		lo, ok2 := hexVal(s[i+1])
		if !ok1 || !ok2 {
			return u, false
		}
		u[j] = hi<<4 | lo
		j++
		i += 2
	}
	return u, true
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// eventID returns properties.event_id when it is a string, else "".
func eventID(props []byte) string {
	if props == nil {
		return ""
	}
	var id string
	eachMember(props, 0, func(key, value []byte) {
		if string(keyText(key)) == "event_id" {
			id, _ = decodeString(value)
		}
	})
	return id
}
