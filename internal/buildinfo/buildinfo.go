// Package buildinfo says which pgsignal is running: the version set at
// build time (-ldflags "-X main.version=..."), else the module version and
// VCS revision Go records in the binary (runtime/debug.ReadBuildInfo).
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// Info describes the running binary.
type Info struct {
	// Version is the -ldflags version, else the module version
	// ("v1.2.3", or "(devel)" for a build from a work tree), else "dev".
	Version string `json:"version"`
	// Revision is the VCS revision the binary was built from ("" when
	// unknown), with "-dirty" when the work tree had changes.
	Revision string `json:"revision"`
	// Time is the revision's commit time (RFC 3339), when known.
	Time string `json:"time,omitempty"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"goversion"`
}

var (
	mu          sync.Mutex
	setVersion  string
	setRevision string
)

// SetVersion sets the version and revision given at build time with
// -ldflags (main's version and revision); they win over the build info's.
// A version "" or "dev" and a revision "" are ignored.
func SetVersion(version, revision string) {
	mu.Lock()
	defer mu.Unlock()
	if version != "" && version != "dev" {
		setVersion = version
	}
	if revision != "" {
		setRevision = revision
	}
}

// Get returns the running binary's build information.
func Get() Info {
	mu.Lock()
	v, r := setVersion, setRevision
	mu.Unlock()
	i := fromBuildInfo(v, readBuildInfo)
	if r != "" {
		i.Revision, i.Time = r, ""
	}
	return i
}

var readBuildInfo = debug.ReadBuildInfo

// fromBuildInfo fills an Info from the ldflags version v and read.
func fromBuildInfo(v string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: v, GoVersion: runtime.Version()}
	bi, ok := read()
	if ok && bi != nil {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		if info.Version == "" && bi.Main.Version != "" {
			info.Version = bi.Main.Version
		}
		dirty := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.time":
				info.Time = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if dirty && info.Revision != "" {
			info.Revision += "-dirty"
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	return info
}

// String is the one-line form `pgsignal version` prints:
// "pgsignal VERSION (revision REV, TIME) GOVERSION".
func (i Info) String() string {
	s := "pgsignal " + i.Version
	if i.Revision != "" {
		s += " (revision " + i.Revision
		if i.Time != "" {
			s += ", " + i.Time
		}
		s += ")"
	}
	return s + " " + i.GoVersion
}
