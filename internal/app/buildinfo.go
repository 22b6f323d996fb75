package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/pgsignal/pgsignal/internal/buildinfo"
)

// buildInfoGauge is pgsignal_build_info{version,revision,goversion} 1: which
// binary runs (the same version is written to <schema>.runs).
func buildInfoGauge() prometheus.Collector {
	bi := buildinfo.Get()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pgsignal_build_info", Help: "1, labelled with the running binary's version, VCS revision and Go version.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(bi.Version, bi.Revision, bi.GoVersion).Set(1)
	return g
}
