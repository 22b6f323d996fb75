package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.1", Main: debug.Module{Path: "github.com/pgsignal/pgsignal", Version: "v0.9.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}, {Key: "vcs.modified", Value: "true"}}}
	read := func() (*debug.BuildInfo, bool) { return bi, true }
	cases := []struct {
		ldflags string
		want    Info
		line    string
	}{
		{"", Info{Version: "v0.9.0", Revision: "abc123-dirty", Time: "2026-12-01T10:00:00Z", GoVersion: "go1.26.1"},
			"pgsignal v0.9.0 (revision abc123-dirty, 2026-12-01T10:00:00Z) go1.26.1"},
		{"1.2.3", Info{Version: "1.2.3", Revision: "abc123-dirty", Time: "2026-12-01T10:00:00Z", GoVersion: "go1.26.1"},
			"pgsignal 1.2.3 (revision abc123-dirty, 2026-12-01T10:00:00Z) go1.26.1"},
	}
	for _, c := range cases {
		got := fromBuildInfo(c.ldflags, read)
		if got != c.want {
			t.Errorf("ldflags %q: got %+v, want %+v", c.ldflags, got, c.want)
		}
		if got.String() != c.line {
			t.Errorf("ldflags %q: String() = %q, want %q", c.ldflags, got.String(), c.line)
		}
	}
	none := fromBuildInfo("", func() (*debug.BuildInfo, bool) { return nil, false })
	if none.Version != "dev" || none.Revision != "" || none.String() != "pgsignal dev "+none.GoVersion {
		t.Errorf("no build info: %+v %q", none, none.String())
	}
}
