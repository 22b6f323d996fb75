package query

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// TableState is the persisted position of one table: every row with a
// cursor value at or below Final was handled (or will never be visible),
// and so were the rows with the values in Seen, all above Final.
type TableState struct {
	Final int64
	Seen  [][2]int64
}

// MarshalJSON writes Final as a string when the table was empty at the
// first poll ("none"), else as a number.
func (s TableState) MarshalJSON() ([]byte, error) {
	type out struct {
		Final json.RawMessage `json:"final"`
		Seen  [][2]int64      `json:"seen"`
	}
	f := json.RawMessage(strconv.FormatInt(s.Final, 10))
	if s.Final == none {
		f = json.RawMessage(`"none"`)
	}
	seen := s.Seen
	if seen == nil {
		seen = [][2]int64{}
	}
	return json.Marshal(out{Final: f, Seen: seen})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *TableState) UnmarshalJSON(b []byte) error {
	var in struct {
		Final json.RawMessage `json:"final"`
		Seen  [][2]int64      `json:"seen"`
	}
	if err := json.Unmarshal(b, &in); err != nil {
		return err
	}
	if string(in.Final) == `"none"` {
		s.Final = none
	} else if err := json.Unmarshal(in.Final, &s.Final); err != nil {
		return fmt.Errorf("final: %w", err)
	}
	s.Seen = in.Seen
	return nil
}

// State is the position of every polled table, by "schema.table".
type State map[string]TableState

// Clone returns a deep copy of s.
func (s State) Clone() State {
	out := make(State, len(s))
	for k, v := range s {
		v.Seen = append([][2]int64(nil), v.Seen...)
		out[k] = v
	}
	return out
}

func (s TableState) spans() spans {
	out := make(spans, 0, len(s.Seen))
	for _, r := range s.Seen {
		out = append(out, span{r[0], r[1]})
	}
	return out
}

func stateOf(final int64, seen spans) TableState {
	out := TableState{Final: final, Seen: make([][2]int64, 0, len(seen))}
	for _, r := range seen {
		out.Seen = append(out.Seen, [2]int64{r.Lo, r.Hi})
	}
	return out
}
