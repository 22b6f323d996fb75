package sink

import (
	"math"
	"sync/atomic"
	"time"
)

// Histogram records durations in logarithmic buckets (2% wide) so that
// quantiles cost constant memory however many samples arrive.
type Histogram struct {
	buckets [histBuckets]atomic.Uint64
	count   atomic.Uint64
	max     atomic.Int64
}

const (
	histGrowth  = 1.02
	histBuckets = 1300 // covers 1µs .. 1.02^1299 µs, about 43 hours
)

var logGrowth = math.Log(histGrowth)

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	us := float64(d) / float64(time.Microsecond)
	i := 0
	if us > 1 {
		i = int(math.Log(us)/logGrowth) + 1
	}
	if i >= histBuckets {
		i = histBuckets - 1
	}
	h.buckets[i].Add(1)
	h.count.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			break
		}
	}
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 { return h.count.Load() }

// Quantile returns the q-quantile (0 < q <= 1), accurate to 2%, or 0 with no
// samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	var counts [histBuckets]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	maxD := time.Duration(h.max.Load())
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, n := range counts {
		seen += n
		if seen >= rank {
			upper := time.Duration(math.Pow(histGrowth, float64(i)) * float64(time.Microsecond))
			if upper > maxD {
				upper = maxD
			}
			return upper
		}
	}
	return maxD
}
