package mapper

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/mapper/codec"
)

// TestTimestampCacheAnswersLikeTheParser: the mapper's cache of the last
// timestamp gives what codec.ParseTimestamp gives, whatever the order of
// texts, types and zones, and a text that fails is never cached.
func TestTimestampCacheAnswersLikeTheParser(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skip("no time zone database:", err)
	}
	type in struct {
		oid  uint32
		text string
		loc  *time.Location
	}
	seq := []in{
		{pgtype.TimestamptzOID, "2026-12-07 13:00:00.123456+00", time.UTC},
		{pgtype.TimestamptzOID, "2026-12-07 13:00:00.123456+00", time.UTC},
		{pgtype.TimestampOID, "2026-12-07 13:00:00.123456", time.UTC},
		{pgtype.TimestampOID, "2026-12-07 13:00:00.123456", ny},
		{pgtype.TimestampOID, "2026-12-07 13:00:00.123456", ny},
		{pgtype.TimestamptzOID, "not a time", time.UTC},
		{pgtype.TimestamptzOID, "not a time", time.UTC},
		{pgtype.DateOID, "2026-12-07", ny},
		{pgtype.TimestamptzOID, "2026-12-07 13:00:00.123457+00", time.UTC},
		{pgtype.TimestamptzOID, "2026-12-07 13:00:00.123456+00", time.UTC},
	}
	var c tsCache
	for i, x := range seq {
		buf := []byte(x.text) // a fresh slice: the cache must copy the text
		got, gerr := c.parse(x.oid, buf, x.loc)
		copy(buf, "XXXX")
		want, werr := codec.ParseTimestamp(x.oid, []byte(x.text), x.loc)
		if (gerr == nil) != (werr == nil) || !got.Equal(want) || got.Location() != want.Location() {
			t.Errorf("%d: %v (%v, %v), want %v (%v, %v)", i, x, got, gerr, want, want.Location(), werr)
		}
	}
}
