package app

import (
	"context"
	"fmt"

	"github.com/diemdanh/diemdanh/hub/broker"
	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/models/wire"
)

// MQTTModule is the MQTT side of the hub: the ingester and the
// broker (embedded mochi or an external broker), started by Run.
type MQTTModule struct {
	Ingest *ingest.Ingester
	ready  chan struct{}
	hub    broker.Hub
	err    error
}

// Ready is closed once the broker is listening (or failed: see Hub).
func (m *MQTTModule) Ready() <-chan struct{} { return m.ready }

// Hub returns the running broker after Ready, or the start error.
func (m *MQTTModule) Hub() (broker.Hub, error) {
	<-m.ready
	return m.hub, m.err
}

// buildMQTT creates the ingester now and starts ingest + broker when Run
// starts (so New+Close never binds the MQTT port). Shutdown: the broker
// stops accepting (PhaseStopAccepting, embedded), ingest drains what it
// accepted (PhaseDrain), then an external connection closes
// (PhaseCloseBroker; its acks for drained messages are sent first).
func (a *App) buildMQTT(_ context.Context) error {
	ing, err := ingest.New(a.DB, a.Cfg.Ingest, a.Log.With("component", "ingest"), a.Now)
	if err != nil {
		return fmt.Errorf("app: %w", err)
	}
	if a.Mods.FaceReview != nil {
		ing.AddTopic(wire.TopicKindUnrecognised, a.Mods.FaceReview)
	}
	if a.Mods.Audit != nil {
		ing.SetAudit(a.Mods.Audit) // gate alarms: clock skew, full disk
	}
	m := &MQTTModule{Ingest: ing, ready: make(chan struct{})}
	a.Mods.MQTT = m
	a.Go("mqtt", func(ctx context.Context) error {
		for _, l := range a.EventListeners() {
			ing.AddListener(l)
		}
		ing.Start(ctx)
		hub, err := broker.Start(ctx, a.Cfg.Broker, a.DB, ing, a.Log.With("component", "broker"), a.Now)
		m.hub, m.err = hub, err
		close(m.ready)
		if err != nil {
			return fmt.Errorf("broker: %w", err)
		}
		if a.Mods.Gallery != nil {
			a.Mods.Gallery.SetAnnouncer(hub)
		}
		<-ctx.Done()
		return nil
	})
	a.OnStop(PhaseStopAccepting, "mqtt broker", func(context.Context) error {
		if hub, err := m.Hub(); err == nil && a.Cfg.Broker.Mode != broker.ModeExternal {
			return hub.Close()
		}
		return nil
	})
	a.OnStop(PhaseDrain, "ingest", func(context.Context) error {
		ing.Close()
		return nil
	})
	a.OnStop(PhaseCloseBroker, "external broker", func(context.Context) error {
		if hub, err := m.Hub(); err == nil && a.Cfg.Broker.Mode == broker.ModeExternal {
			return hub.Close()
		}
		return nil
	})
	return nil
}
