package query

import (
	"math"
	"sort"
)

// none is the final watermark of a table that had no row when pgsignal
// first polled it: every cursor value is above it.
const none = math.MinInt64

// span is a run of consecutive cursor values [Lo, Hi], all seen.
type span struct {
	Lo, Hi int64
}

// spans is a sorted set of cursor values, as disjoint, non-adjacent spans
// in increasing order. Rows committed in cursor order make one span; each
// value a poll did not see (a transaction still open, rolled back, or a
// value the sequence skipped) splits it.
type spans []span

// add inserts v, merging it with its neighbours.
func (s spans) add(v int64) spans {
	i := sort.Search(len(s), func(i int) bool { return s[i].Hi >= v })
	if i < len(s) && s[i].Lo <= v {
		return s // already in
	}
	joinLeft := i > 0 && s[i-1].Hi == v-1 && v != math.MinInt64
	joinRight := i < len(s) && s[i].Lo == v+1 && v != math.MaxInt64
	switch {
	case joinLeft && joinRight:
		s[i-1].Hi = s[i].Hi
		return append(s[:i], s[i+1:]...)
	case joinLeft:
		s[i-1].Hi = v
		return s
	case joinRight:
		s[i].Lo = v
		return s
	}
	s = append(s, span{})
	copy(s[i+1:], s[i:])
	s[i] = span{v, v}
	return s
}

// has reports whether v is in s.
func (s spans) has(v int64) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].Hi >= v })
	return i < len(s) && s[i].Lo <= v
}

// above returns the part of s above v (a copy).
func (s spans) above(v int64) spans {
	out := spans{}
	for _, r := range s {
		if r.Hi <= v {
			continue
		}
		if r.Lo <= v {
			r.Lo = v + 1
		}
		out = append(out, r)
	}
	return out
}

// gap is an open interval (After, Before) of cursor values not seen.
type gap struct {
	After, Before int64
}

// gaps returns the values above final and below the last span that s does
// not hold, as open intervals.
func (s spans) gaps(final int64) []gap {
	var out []gap
	prev := final
	for _, r := range s {
		if r.Lo > prev && (prev == math.MinInt64 || r.Lo-prev > 1) {
			out = append(out, gap{prev, r.Lo})
		}
		prev = r.Hi
	}
	return out
}

// top returns the highest value of s, or final when s is empty.
func (s spans) top(final int64) int64 {
	if len(s) == 0 {
		return final
	}
	return max(s[len(s)-1].Hi, final)
}
