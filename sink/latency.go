package sink

import (
	"math"
	"sync"
	"time"
)

// Histogram records durations in logarithmic buckets (2% wide) so that
// quantiles cost constant memory however many samples arrive.
type Histogram struct {
	mu      sync.Mutex
	buckets []uint64
	count   uint64
	max     time.Duration
}

const (
	histGrowth  = 1.02
	histBuckets = 1100 // covers 1µs .. ~3 hours
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
	h.mu.Lock()
	if h.buckets == nil {
		h.buckets = make([]uint64, histBuckets)
	}
	h.buckets[i]++
	h.count++
	if d > h.max {
		h.max = d
	}
	h.mu.Unlock()
}

// Count returns the number of samples.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// Quantile returns the q-quantile (0 < q <= 1), accurate to 2%, or 0 with no
// samples.
func (h *Histogram) Quantile(q float64) time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.count)))
	if rank == 0 {
		rank = 1
	}
	var seen uint64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			upper := time.Duration(math.Pow(histGrowth, float64(i)) * float64(time.Microsecond))
			if upper > h.max {
				upper = h.max
			}
			return upper
		}
	}
	return h.max
}
