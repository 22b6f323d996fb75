package mapper

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/replication"
)

// BenchmarkMapSeedRow maps one row of the seed table (name, user, timestamptz,
// jsonb properties), including its idempotency key: the per-row hot path.
func BenchmarkMapSeedRow(b *testing.B) {
	rel := replication.NewRelation(1, "analytics", "user_events", []replication.Column{
		{Name: "id", TypeOID: pgtype.Int8OID}, {Name: "event_name", TypeOID: pgtype.TextOID},
		{Name: "user_id", TypeOID: pgtype.TextOID}, {Name: "event_timestamp", TypeOID: pgtype.TimestamptzOID},
		{Name: "event_data", TypeOID: pgtype.JSONBOID},
	})
	m, err := New([]Rule{{Schema: "analytics", Table: "user_events", NameColumn: "event_name", ExternalID: "user_id",
		Timestamp: "event_timestamp", Properties: []string{"event_data"}}})
	if err != nil {
		b.Fatal(err)
	}
	vals := [][]byte{[]byte("123456"), []byte("purchase"), []byte("user_4242"),
		[]byte("2025-10-21 19:09:32.263412+00"), []byte(`{"qty": 2, "item": "sku_42", "price": 24.9}`)}
	commit := time.Date(2025, 10, 21, 19, 9, 33, 0, time.UTC)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pos := cdc.Position{CommitLSN: 0x16B374D848, Ordinal: uint32(i)}
		ch := replication.Change{Rel: rel, Values: vals, Pos: pos, CommitTime: commit,
			IdempotencyKey: cdc.IdempotencyKey("7301232434539112345", "pgsignal", pos)}
		if ev := m.Map(&ch); ev == nil || ev.Reject != "" {
			b.Fatal("not mapped")
		}
	}
}
