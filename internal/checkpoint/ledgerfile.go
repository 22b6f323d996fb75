package checkpoint

import (
	"context"

	"github.com/pgsignal/pgsignal/internal/statefile"
)

// LedgerSection is the section of source.state_file that holds read-only
// mode's delivery ledger.
const LedgerSection = "ledger"

// StateFileLedger keeps the delivery ledger in the section LedgerSection of
// the state file (read-only mode), for one slot of one database system: a
// ledger written for another slot or another database is not used, and
// the next write replaces it. Each write is atomic and fsynced
// (statefile.File.Put). It implements LedgerStore.
type StateFileLedger struct {
	File     *statefile.File
	SystemID string
	Slot     string
	// Skipped, when set, returns the events this run skipped because the
	// ledger had them; it is written beside the ranges for status.
	Skipped func() uint64
}

var _ LedgerStore = (*StateFileLedger)(nil)

// ledgerFile is the section's JSON.
type ledgerFile struct {
	SystemID string  `json:"system_id"`
	Slot     string  `json:"slot"`
	Ranges   []Range `json:"ranges"`
	// Skipped is the events the last start did not send because the
	// ledger had them.
	Skipped uint64 `json:"skipped_on_last_start"`
}

// Load returns the ranges stored for the slot and system, or none.
func (s *StateFileLedger) Load(context.Context) ([]Range, error) {
	var lf ledgerFile
	ok, err := s.File.Get(LedgerSection, &lf)
	if err != nil || !ok || lf.SystemID != s.SystemID || lf.Slot != s.Slot {
		return nil, err
	}
	return lf.Ranges, nil
}

// Write replaces the section with ranges.
func (s *StateFileLedger) Write(_ context.Context, ranges []Range) error {
	if ranges == nil {
		ranges = []Range{}
	}
	lf := ledgerFile{SystemID: s.SystemID, Slot: s.Slot, Ranges: ranges}
	if s.Skipped != nil {
		lf.Skipped = s.Skipped()
	}
	return s.File.Put(map[string]any{LedgerSection: lf})
}

// LedgerSize is a delivery ledger's size, as `pgsignal status` shows it.
type LedgerSize struct {
	Ranges int   `json:"ranges"`
	Events int64 `json:"events"`
	// SkippedOnLastStart is the events the last run did not send because
	// the ledger had them (-1 when unknown).
	SkippedOnLastStart int64 `json:"skipped_on_last_start"`
}

// ReadStateFileLedgerSize returns the size of the ledger in the state file
// at path (read-only mode), or nil when it holds none.
func ReadStateFileLedgerSize(path string) (*LedgerSize, error) {
	f, err := statefile.Open(path)
	if err != nil {
		return nil, err
	}
	var lf ledgerFile
	ok, err := f.Get(LedgerSection, &lf)
	if err != nil || !ok {
		return nil, err
	}
	ls := &LedgerSize{Ranges: len(lf.Ranges), SkippedOnLastStart: int64(lf.Skipped)}
	for _, r := range lf.Ranges {
		ls.Events += r.Events
	}
	return ls, nil
}
