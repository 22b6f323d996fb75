package replication

import (
	"errors"
	"strings"
	"testing"
)

// A partitioned table on a server older than PostgreSQL 13 is refused with
// the version and what to do; other tables, or a newer server, pass.
func TestCheckPartitionVersion(t *testing.T) {
	parted := []PublishedTable{{TableRef: TableRef{Schema: "public", Name: "events"}, Partitioned: true}}
	err := CheckPartitionVersion(120015, "12.15", parted)
	if !errors.Is(err, ErrPermanent) || !strings.Contains(err.Error(), "table public.events is partitioned") ||
		!strings.Contains(err.Error(), "server is PostgreSQL 12.15") {
		t.Fatalf("error %v", err)
	}
	if err := CheckPartitionVersion(130000, "13.0", parted); err != nil {
		t.Fatal(err)
	}
	if err := CheckPartitionVersion(120015, "12.15", []PublishedTable{{TableRef: TableRef{Schema: "public", Name: "plain"}}}); err != nil {
		t.Fatal(err)
	}
	if got := CreatePublicationSQL("p", parted); got != `CREATE PUBLICATION "p" FOR TABLE "public"."events" WITH (publish = 'insert', publish_via_partition_root = true);` {
		t.Fatalf("SQL %s", got)
	}
}
