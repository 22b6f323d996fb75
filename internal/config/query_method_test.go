package config

import (
	"strings"
	"testing"
)

// TestQueryMethodRefusesBackfillAndUpdates: the query method starts from
// the current rows and reads new rows only.
func TestQueryMethodRefusesBackfillAndUpdates(t *testing.T) {
	_, err := Parse([]byte(`source:
  dsn: postgres://u@db/app
  method: query
onesignal:
  app_id: 00000000-0000-0000-0000-000000000000
  api_key: k
tables:
  - table: analytics.user_events
    cursor: id
    name: event_name
    external_id: user_id
    backfill:
      since: 7d
  - table: analytics.orders
    cursor: id
    name_value: order
    external_id: user_id
    emit: [insert, update]
`), nil)
	if err == nil {
		t.Fatal("Parse accepted backfill and emit update with method query")
	}
	for _, want := range []string{"tables[0].backfill", "not available with source.method: query", "tables[1].emit", "update is not available with source.method: query"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
