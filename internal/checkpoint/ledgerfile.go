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
}

var _ LedgerStore = (*StateFileLedger)(nil)

// ledgerFile is the section's JSON.
type ledgerFile struct {
	SystemID string  `json:"system_id"`
	Slot     string  `json:"slot"`
	Ranges   []Range `json:"ranges"`
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
	return s.File.Put(map[string]any{LedgerSection: ledgerFile{SystemID: s.SystemID, Slot: s.Slot, Ranges: ranges}})
}
