package config

import (
	"fmt"
	"testing"
)

func TestSmoke(t *testing.T) {
	y := `
source:
  dsn: "postgres://census:hunter2secret@db.internal:5432/analytics?sslmode=verify-full"
  mode: fulll
  slots: x
onesignal:
  app_id: "nope"
  api_key: "os_v2_app_supersecret"
  timeout: 30
sink:
  batch_size: many
  max_pending_bytes: 64
  linger: ${LINGER}
tables:
  - table: analytics.user_events
    name: event_name
    name_value: purchase
    externl_id: user_id
  - table: '"Odd; Name".events'
    name_value: x
    external_id: uid
    properties: [a, b, a]
  - table: Analytics.User_Events
    name: n
    external_id: e
  - schema: x
`
	c, err := Parse([]byte(y), func(string) string { return "" })
	fmt.Println(err)
	if c != nil {
		fmt.Println(c.Redacted(), c.Warnings)
	}
}
