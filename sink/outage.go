package sink

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// outageRepeat is how often a failure that goes on is logged again.
const outageRepeat = 30 * time.Second

// outage turns retried requests into few log lines: the first failure at
// warn (error for an answer that is not OneSignal's), the same failure going
// on at most every outageRepeat, and one line when a request succeeds
// again, saying how long delivery was down and how many requests were
// retried. Lanes share one outage.
type outage struct {
	log *zap.Logger

	mu       sync.Mutex
	since    time.Time // first failure of the current outage; zero when none
	lastLog  time.Time
	retries  int // retried requests since the first failure
	reported int // retries already counted in a log line
}

// failed records a request that will be retried after wait, and logs it
// when it starts an outage or the last line is outageRepeat old. fields
// describe the request and the failure.
func (o *outage) failed(now time.Time, wait time.Duration, unexpected bool, fields ...zap.Field) {
	o.mu.Lock()
	first := o.since.IsZero()
	if first {
		o.since = now
	}
	o.retries++
	due := first || now.Sub(o.lastLog) >= outageRepeat
	var since time.Time
	var retries, unlogged int
	if due {
		o.lastLog = now
		since, retries, unlogged = o.since, o.retries, o.retries-o.reported
		o.reported = o.retries
	}
	o.mu.Unlock()
	if !due {
		return
	}
	fields = append(fields, zap.Float64("retry_in_seconds", wait.Seconds()))
	if !first {
		fields = append(fields, zap.Float64("failing_for_seconds", now.Sub(since).Seconds()),
			zap.Int("retried_requests", retries), zap.Int("retries_since_last_line", unlogged))
	}
	msg := "OneSignal request failed; retrying"
	if !first {
		msg = "OneSignal requests still failing; retrying"
	}
	if unexpected {
		o.log.Error("onesignal.url did not answer as OneSignal: these events are not confirmed; retrying", fields...)
		return
	}
	o.log.Warn(msg, fields...)
}

// succeeded records a successful request and logs the end of an outage.
func (o *outage) succeeded(now time.Time) {
	o.mu.Lock()
	if o.since.IsZero() {
		o.mu.Unlock()
		return
	}
	since, retries := o.since, o.retries
	o.since, o.retries, o.reported, o.lastLog = time.Time{}, 0, 0, time.Time{}
	o.mu.Unlock()
	o.log.Info("OneSignal delivery recovered", zap.Float64("down_for_seconds", now.Sub(since).Seconds()),
		zap.Int("retried_requests", retries))
}
