package codec

import (
	"testing"
	"time"
)

// The fast timestamptz parser agrees with time.Parse, and refuses what it
// does not handle.
func TestFastTimestamptz(t *testing.T) {
	cases := []struct {
		in   string
		want string // RFC 3339 in UTC, "" when the fast path must refuse
	}{
		{"2025-10-21 19:09:32.263412+00", "2025-10-21T19:09:32.263412Z"},
		{"2025-10-21 19:09:32+00", "2025-10-21T19:09:32Z"},
		{"2024-02-29 12:34:56.789+02", "2024-02-29T10:34:56.789Z"},
		{"2024-01-01 00:00:00-05:30", "2024-01-01T05:30:00Z"},
		{"1900-01-01 00:00:00+00:19:32", "1899-12-31T23:40:28Z"},
		{"2024-01-01 00:00:00.123456789123+00", "2024-01-01T00:00:00.123456789Z"},
		{"2023-02-30 00:00:00+00", ""},
		{"infinity", ""},
		{"0044-03-15 12:00:00+00 BC", ""},
		{"2024-01-01 00:00:00", ""},
		{"2024-01-01 00:00:00.+00", ""},
		{"2024-13-01 00:00:00+00", ""},
	}
	for _, c := range cases {
		got, ok := fastTimestamptz([]byte(c.in))
		if c.want == "" {
			if ok {
				t.Errorf("%q: accepted as %s, want refusal", c.in, got)
			}
			continue
		}
		if !ok || got.UTC().Format(time.RFC3339Nano) != c.want {
			t.Errorf("%q: got %s (%v), want %s", c.in, got.UTC().Format(time.RFC3339Nano), ok, c.want)
		}
	}
}

func TestAppendTimestampMillis(t *testing.T) {
	for _, ts := range []time.Time{
		time.Date(2025, 10, 21, 19, 9, 32, 263999999, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2024, 2, 29, 23, 59, 59, 1e6, time.FixedZone("x", 5*3600)),
		time.Date(12345, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		want := ts.UTC().Format("2006-01-02T15:04:05.000Z07:00")
		if got := string(AppendTimestampMillis(nil, ts)); got != want {
			t.Errorf("%v: got %s, want %s", ts, got, want)
		}
	}
}
