package sink

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Quantile(0.5) != 0 || h.Quantile(1) != 0 {
		t.Errorf("empty histogram: Count %d, p50 %v, p100 %v", h.Count(), h.Quantile(0.5), h.Quantile(1))
	}
}

func TestHistogramSingleSample(t *testing.T) {
	// One sample: every quantile is that sample (the bucket's upper bound is
	// capped at the maximum).
	for _, d := range []time.Duration{0, 500 * time.Nanosecond, time.Microsecond, 1234 * time.Microsecond, 1500 * time.Millisecond, 30 * time.Minute} {
		var h Histogram
		h.Observe(d)
		for _, q := range []float64{0, 0.001, 0.5, 0.99, 1} {
			if got := h.Quantile(q); got != d {
				t.Errorf("one sample %v: Quantile(%v) = %v", d, q, got)
			}
		}
		if h.Count() != 1 {
			t.Errorf("Count() = %d, want 1", h.Count())
		}
	}
}

func TestHistogramQuantilesWithinTwoPercent(t *testing.T) {
	tests := []struct {
		name     string
		min, max time.Duration
	}{
		{"microseconds", 2 * time.Microsecond, 900 * time.Microsecond},
		{"milliseconds", time.Millisecond, 2 * time.Second},
		{"wide", 10 * time.Microsecond, 40 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(42, 7))
			var h Histogram
			samples := make([]time.Duration, 20000)
			lo, hi := math.Log(float64(tt.min)), math.Log(float64(tt.max))
			for i := range samples {
				samples[i] = time.Duration(math.Exp(lo + rng.Float64()*(hi-lo)))
				h.Observe(samples[i])
			}
			slices.Sort(samples)
			if h.Count() != uint64(len(samples)) {
				t.Fatalf("Count() = %d", h.Count())
			}
			for _, q := range []float64{0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1} {
				want := samples[int(math.Ceil(q*float64(len(samples))))-1]
				got := h.Quantile(q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.02 {
					t.Errorf("Quantile(%v) = %v, exact %v: %.2f%% off", q, got, want, 100*rel)
				}
			}
			if got := h.Quantile(1); got != samples[len(samples)-1] {
				t.Errorf("Quantile(1) = %v, want the maximum %v", got, samples[len(samples)-1])
			}
		})
	}
}

func TestHistogramLongLatencies(t *testing.T) {
	var h Histogram
	for i := 0; i < 100; i++ {
		h.Observe(2*time.Hour + time.Duration(i)*time.Second)
	}
	want := 2*time.Hour + 49*time.Second
	if got := h.Quantile(0.5); math.Abs(float64(got-want))/float64(want) > 0.02 {
		t.Errorf("Quantile(0.5) = %v, want about %v", got, want)
	}
}

func TestHistogramConcurrentObserve(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i := 1; i <= 1000; i++ {
				h.Observe(time.Duration(i) * time.Millisecond)
				_ = h.Quantile(0.99)
			}
		})
	}
	wg.Wait()
	if h.Count() != 8000 {
		t.Errorf("Count() = %d, want 8000", h.Count())
	}
	if got := h.Quantile(1); got != time.Second {
		t.Errorf("max = %v, want 1s", got)
	}
	if got, want := h.Quantile(0.5), 500*time.Millisecond; math.Abs(float64(got-want))/float64(want) > 0.02 {
		t.Errorf("p50 = %v, want about %v", got, want)
	}
}
