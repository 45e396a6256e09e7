package telemetry

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/votingapp/voting/internal/voting"
)

// QueueMetrics are the metrics of the vote queue as one process sees it: what it moved to
// the dead letters, and the queue's backlog, read at scrape time.
type QueueMetrics struct {
	reg          prometheus.Registerer
	deadLettered *prometheus.CounterVec
}

// NewQueueMetrics registers the dead-letter counter; Observe adds the backlog gauges.
func NewQueueMetrics(reg prometheus.Registerer) *QueueMetrics {
	m := &QueueMetrics{
		reg: reg,
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voting_votes_dead_lettered_total",
			Help: "Messages moved to the dead letters by this process, by kind (undecodable, max_deliveries, store_refused).",
		}, []string{"reason"}),
	}
	for _, k := range []string{voting.DeadUndecodable, voting.DeadMaxDeliveries, voting.DeadStoreRefused} {
		m.deadLettered.WithLabelValues(k) // every kind shows from the start, at 0
	}
	reg.MustRegister(m.deadLettered)
	return m
}

// DeadLettered counts one dead letter of the kind.
func (m *QueueMetrics) DeadLettered(kind string) { m.deadLettered.WithLabelValues(kind).Inc() }

// Observe exports the queue's backlog, read by stats at each scrape.
func (m *QueueMetrics) Observe(stats func(context.Context) (voting.QueueStats, error)) {
	m.reg.MustRegister(queueCollector{stats})
}

var (
	queueLength = prometheus.NewDesc("voting_queue_length",
		"Votes in the queue not yet acknowledged (the backlog).", nil, nil)
	queuePending = prometheus.NewDesc("voting_queue_pending",
		"Votes delivered to a worker and not yet acknowledged.", nil, nil)
	queueOldest = prometheus.NewDesc("voting_queue_oldest_pending_age_seconds",
		"Age of the oldest delivered, unacknowledged vote: the consumer lag.", nil, nil)
	queueDead = prometheus.NewDesc("voting_queue_dead_letters",
		"Messages in the dead letters.", nil, nil)
	queueMemory = prometheus.NewDesc("voting_queue_memory_bytes",
		"Memory the queue server uses (Redis used_memory).", nil, nil)
	queueMemoryLimit = prometheus.NewDesc("voting_queue_memory_limit_bytes",
		"Memory the queue server may use (Redis maxmemory); past it votes are refused with 503. 0: no limit.", nil, nil)
)

// queueCollector reads the queue's stats when Prometheus scrapes, so the numbers are current
// and cost nothing between scrapes. When the queue cannot be read, the gauges are left out
// of the scrape rather than reported as zero.
type queueCollector struct {
	stats func(context.Context) (voting.QueueStats, error)
}

func (c queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- queueLength
	ch <- queuePending
	ch <- queueOldest
	ch <- queueDead
	ch <- queueMemory
	ch <- queueMemoryLimit
}

func (c queueCollector) Collect(ch chan<- prometheus.Metric) {
	// A scrape must answer quickly even when Redis does not.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	s, err := c.stats(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(queueLength, prometheus.GaugeValue, float64(s.Length))
	ch <- prometheus.MustNewConstMetric(queuePending, prometheus.GaugeValue, float64(s.Pending))
	ch <- prometheus.MustNewConstMetric(queueOldest, prometheus.GaugeValue, s.OldestPendingAge.Seconds())
	ch <- prometheus.MustNewConstMetric(queueDead, prometheus.GaugeValue, float64(s.DeadLetters))
	if s.MemoryUsed > 0 { // a queue that knows its memory (Redis, when INFO is allowed)
		ch <- prometheus.MustNewConstMetric(queueMemory, prometheus.GaugeValue, float64(s.MemoryUsed))
		ch <- prometheus.MustNewConstMetric(queueMemoryLimit, prometheus.GaugeValue, float64(s.MemoryLimit))
	}
}
