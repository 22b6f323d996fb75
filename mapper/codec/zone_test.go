package codec

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// zonesUnderTest cover spring-forward and fall-back changes of one hour and
// of 30 minutes (Lord_Howe), changes at midnight (Santiago, Havana), a
// change of standard offset (Moscow 2011 and 2014), a skipped day (Apia
// 2011), negative DST (Dublin), a half-hour zone (St_Johns) and zones
// without DST.
var zonesUnderTest = []string{
	"America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago", "America/Havana",
	"Europe/Moscow", "Pacific/Apia", "Europe/Dublin", "America/St_Johns", "Asia/Kolkata", "UTC",
}

// TestInZoneMatchesPostgres reads wall-clock times in a zone as the mapper
// does for timestamp_zone and compares each instant with what PostgreSQL's
// `timestamp AT TIME ZONE zone` gives, for every 15 minutes (and the seconds
// and fractions next to each change) within 3 hours of each change of
// offset from 2010 to 2030 in several zones, and for dates at midnight.
func TestInZoneMatchesPostgres(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pg.Connect(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET TimeZone = 'UTC'"); err != nil {
		t.Fatal(err)
	}

	type sample struct {
		zone, wall string
		oid        uint32
	}
	var samples []sample
	from := time.Date(2010, 1, 1, 0, 0, 0, 0, time.UTC)
	to := time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC)
	changes := 0
	for _, zone := range zonesUnderTest {
		loc, err := time.LoadLocation(zone)
		if err != nil {
			t.Fatal(err)
		}
		// A few ordinary times, so that zones without changes are tested too.
		// Before the zone's first rule (local mean time), the switch to
		// standard time in 1883, and beyond the transitions the zone file
		// lists (from its POSIX rule).
		for _, w := range []string{"2026-01-15 12:00:00", "2026-07-15 12:00:00", "2026-03-08 02:30:00", "2026-11-01 01:30:00",
			"1800-06-01 12:00:00", "1883-11-18 11:58:00", "1883-11-18 12:01:00", "1883-11-18 12:05:00",
			"2040-03-11 02:30:00", "2040-11-04 01:30:00", "2100-03-14 02:30:00", "2100-03-28 01:30:00", "2100-10-31 01:30:00"} {
			samples = append(samples, sample{zone, w, pgtype.TimestampOID})
		}
		for at := from; at.Before(to); {
			_, end := at.In(loc).ZoneBounds()
			if end.IsZero() || !end.Before(to) {
				break
			}
			changes++
			// The wall clock just before the change, in the offset before it.
			wall := end.Add(-time.Second).In(loc)
			base := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, time.UTC).Add(time.Second)
			for d := -3 * time.Hour; d <= 3*time.Hour; d += 15 * time.Minute {
				samples = append(samples, sample{zone, base.Add(d).Format("2006-01-02 15:04:05"), pgtype.TimestampOID})
			}
			for _, d := range []time.Duration{-time.Second, -time.Millisecond, time.Second, 59*time.Minute + 59*time.Second + 500*time.Millisecond, time.Hour, time.Hour + time.Second} {
				samples = append(samples, sample{zone, base.Add(d).Format("2006-01-02 15:04:05.999999"), pgtype.TimestampOID})
			}
			for _, d := range []int{-1, 0, 1} {
				samples = append(samples, sample{zone, base.AddDate(0, 0, d).Format("2006-01-02"), pgtype.DateOID})
			}
			at = end
		}
	}
	if changes < 200 {
		t.Fatalf("only %d changes of offset found: the zone data is missing", changes)
	}

	zones := make([]string, len(samples))
	walls := make([]string, len(samples))
	dates := make([]bool, len(samples))
	for i, s := range samples {
		zones[i], walls[i], dates[i] = s.zone, s.wall, s.oid == pgtype.DateOID
	}
	rows, err := conn.Query(ctx, `SELECT CASE WHEN d THEN w::date::timestamp AT TIME ZONE z ELSE w::timestamp AT TIME ZONE z END
FROM unnest($1::text[], $2::text[], $3::bool[]) WITH ORDINALITY AS u(z, w, d, n) ORDER BY n`, zones, walls, dates)
	if err != nil {
		t.Fatal(err)
	}
	var want []time.Time
	for rows.Next() {
		var at time.Time
		if err := rows.Scan(&at); err != nil {
			t.Fatal(err)
		}
		want = append(want, at)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(want) != len(samples) {
		t.Fatalf("%d answers for %d samples", len(want), len(samples))
	}
	bad := 0
	for i, s := range samples {
		loc, _ := time.LoadLocation(s.zone)
		got, err := ParseTimestamp(s.oid, []byte(s.wall), loc)
		if err != nil {
			t.Fatalf("ParseTimestamp(%q): %v", s.wall, err)
		}
		if !got.Equal(want[i]) {
			bad++
			if bad <= 20 {
				t.Errorf("%s in %s: got %s, PostgreSQL %s", s.wall, s.zone, got.UTC().Format(time.RFC3339Nano), want[i].UTC().Format(time.RFC3339Nano))
			}
		}
	}
	t.Logf("figures: %d wall-clock times around %d changes of offset in %d zones; %d differ from PostgreSQL", len(samples), changes, len(zonesUnderTest), bad)
	if bad > 0 {
		t.Fatalf("%d of %d instants differ from PostgreSQL", bad, len(samples))
	}
}

// The two instants of the issue, as PostgreSQL 15 gives them.
func TestInZoneIssueExamples(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ wall, want string }{
		{"2026-03-08 01:45:00", "2026-03-08T06:45:00Z"},
		{"2026-03-08 02:30:00", "2026-03-08T07:30:00Z"}, // skipped: the offset before (EST)
		{"2026-03-08 03:00:00", "2026-03-08T07:00:00Z"},
		{"2026-11-01 00:59:59", "2026-11-01T04:59:59Z"},
		{"2026-11-01 01:30:00", "2026-11-01T06:30:00Z"}, // repeated: the later instant (EST)
		{"2026-11-01 02:00:00", "2026-11-01T07:00:00Z"},
	} {
		got, err := ParseTimestamp(pgtype.TimestampOID, []byte(c.wall), ny)
		if err != nil {
			t.Fatal(err)
		}
		if s := got.UTC().Format(time.RFC3339); s != c.want {
			t.Errorf("%s America/New_York = %s, want %s", c.wall, s, c.want)
		}
	}
}
