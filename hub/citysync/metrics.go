package citysync

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

type metrics struct {
	lagRows     prometheus.Gauge
	lagSeconds  prometheus.Gauge
	lastSuccess prometheus.Gauge
	up          prometheus.Gauge
	issues      prometheus.Gauge
	errors      prometheus.Counter
	pushed      *prometheus.CounterVec
}

func newMetrics() *metrics {
	return &metrics{
		lagRows: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diemdanh_citysync_lag_rows",
			Help: "Changes stored on the hub and not yet in the city database."}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diemdanh_citysync_lag_seconds",
			Help: "Age of the oldest change not yet in the city database (0 when caught up)."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diemdanh_citysync_last_success_timestamp_seconds",
			Help: "Unix time of the last successful sync."}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diemdanh_citysync_up",
			Help: "1 if the last sync succeeded."}),
		issues: prometheus.NewGauge(prometheus.GaugeOpts{Name: "diemdanh_citysync_issues",
			Help: "Bad rows from or refused by the city, reported and skipped."}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{Name: "diemdanh_citysync_errors_total",
			Help: "Failed syncs."}),
		pushed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "diemdanh_citysync_rows_pushed_total",
			Help: "Rows upserted into the city database."}, []string{"kind"}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.lagRows, m.lagSeconds, m.lastSuccess, m.up, m.issues, m.errors, m.pushed} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// LagRows and LagSeconds return the current lag gauges (tests, status pages).
func (w *Worker) LagRows() float64 { return gaugeValue(w.m.lagRows) }

// LagSeconds returns the lag in seconds as last measured.
func (w *Worker) LagSeconds() float64 { return gaugeValue(w.m.lagSeconds) }

func gaugeValue(g prometheus.Gauge) float64 {
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		return -1
	}
	return m.GetGauge().GetValue()
}
