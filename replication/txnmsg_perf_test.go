package replication

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/jackc/pglogrepl"
)

// TestParseBeginCommitMatchPglogrepl: the allocation-free decoders read
// Begin and Commit exactly as pglogrepl.Parse does, and refuse a truncated
// message.
func TestParseBeginCommitMatchPglogrepl(t *testing.T) {
	const commitTime = 818_000_123_456_789 // 2025-12-03 in µs since 2000
	begin := beginMsg(0x1_6B37_4D48, commitTime, 4711)
	m, err := pglogrepl.Parse(begin)
	if err != nil {
		t.Fatal(err)
	}
	want := m.(*pglogrepl.BeginMessage)
	lsn, ct, xid, err := parseBegin(begin)
	if err != nil || lsn != uint64(want.FinalLSN) || !ct.Equal(want.CommitTime) || ct.Location() != want.CommitTime.Location() || xid != want.Xid {
		t.Errorf("parseBegin = %x, %v, %d, %v; pglogrepl: %x, %v, %d", lsn, ct, xid, err, uint64(want.FinalLSN), want.CommitTime, want.Xid)
	}
	commit := commitMsg(0x1_6B37_4D48, 0x1_6B37_4D90, commitTime)
	m, err = pglogrepl.Parse(commit)
	if err != nil {
		t.Fatal(err)
	}
	wantC := m.(*pglogrepl.CommitMessage)
	cl, el, err := parseCommit(commit)
	if err != nil || cl != uint64(wantC.CommitLSN) || el != uint64(wantC.TransactionEndLSN) {
		t.Errorf("parseCommit = %x, %x, %v; pglogrepl: %x, %x", cl, el, err, uint64(wantC.CommitLSN), uint64(wantC.TransactionEndLSN))
	}
	if _, _, _, err := parseBegin(begin[:20]); !errors.Is(err, errShortMessage) {
		t.Errorf("truncated begin: %v", err)
	}
	if _, _, err := parseCommit(commit[:25]); !errors.Is(err, errShortMessage) {
		t.Errorf("truncated commit: %v", err)
	}
}

// beginMsg is a pgoutput Begin: final LSN, commit time (µs since 2000), xid.
func beginMsg(final, commitTime uint64, xid uint32) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, final)
	b = binary.BigEndian.AppendUint64(b, commitTime)
	return binary.BigEndian.AppendUint32(b, xid)
}

// commitMsg is a pgoutput Commit: flags, commit LSN, end LSN, commit time
// (µs since 2000).
func commitMsg(commit, end, commitTime uint64) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, commit)
	b = binary.BigEndian.AppendUint64(b, end)
	return binary.BigEndian.AppendUint64(b, commitTime)
}
