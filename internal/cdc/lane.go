package cdc

// Lane returns the lane (0 <= lane < lanes) of the events of the user
// externalID: a 64-bit FNV-1a hash of the external_id modulo lanes. The sink
// routes by it, so one user's events are sent in commit order, and the
// delivery ledger records per lane; it is stable from one run to the next.
func Lane(externalID string, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := uint64(14695981039346656037)
	for i := 0; i < len(externalID); i++ {
		h ^= uint64(externalID[i])
		h *= 1099511628211
	}
	return int(h % uint64(lanes))
}
