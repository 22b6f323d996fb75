package config

import (
	"strings"
	"testing"
	"time"
)

func TestReceiveTimeout(t *testing.T) {
	withKey := func(v string) []byte {
		return []byte(strings.Replace(minimal, "source:\n", "source:\n  receive_timeout: "+v+"\n", 1))
	}
	c, err := Parse([]byte(minimal), env(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.ReceiveTimeout != 0 {
		t.Errorf("default ReceiveTimeout = %v, want 0 (derived from the server)", c.Source.ReceiveTimeout)
	}
	if strings.Contains(c.Redacted(), "receive_timeout") {
		t.Errorf("the derived default is printed:\n%s", c.Redacted())
	}
	c, err = Parse(withKey("45s"), env(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.ReceiveTimeout != 45*time.Second {
		t.Errorf("ReceiveTimeout = %v, want 45s", c.Source.ReceiveTimeout)
	}
	if !strings.Contains(c.Redacted(), "receive_timeout: 45s") {
		t.Errorf("receive_timeout missing from the redacted config:\n%s", c.Redacted())
	}
	for in, want := range map[string]string{
		"500ms": "500ms is too short: use at least 1s",
		"-5s":   "source.receive_timeout",
		"ten":   "source.receive_timeout",
	} {
		if _, err := Parse(withKey(in), env(testEnv)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("receive_timeout %s: err = %v, want it to contain %q", in, err, want)
		}
	}
}
