package config

import (
	"strings"
	"testing"
	"time"
)

// tables[].transform_timeout: a duration for a transform's statements; not
// without a transform, not below 10ms.
func TestTransformTimeoutKey(t *testing.T) {
	c, err := Parse([]byte(transformTable+"    transform_timeout: 2m\n"), env(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Tables[0].TransformTimeout; got != 2*time.Minute {
		t.Errorf("TransformTimeout = %s, want 2m", got)
	}
	for _, bad := range []string{transformTable + "    transform_timeout: 1ms\n", minimal + "    transform_timeout: 10s\n"} {
		_, err := Parse([]byte(bad), env(testEnv))
		if err == nil || !strings.Contains(err.Error(), "transform_timeout") || !strings.Contains(err.Error(), "needs a transform and a duration of at least 10ms") {
			t.Errorf("%s: error %v, want one naming transform_timeout", bad, err)
		}
	}
}
