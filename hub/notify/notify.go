// Package notify tells guardians when their child arrives at or leaves
// school, or has not arrived by the class's cut-off, over Web Push
// (VAPID), e-mail (SMTP) and a signed webhook (the bridge to SMS gateways
// and Zalo OA/ZNS).
//
// Messages go through a durable outbox table (notify_outbox) in the hub's
// SQLite database. Stored gate events are turned into outbox rows by a
// scanner that keeps its cursor (the events rowid) in the same
// transaction, so an event committed by ingest is never lost even if the
// hub dies right after. A UNIQUE dedupe key ("arrival:<pupil>:<day>:…")
// gives one arrival message per child per day per recipient. Deliveries
// are retried with capped exponential backoff; a guardian with no usable
// channel is skipped quietly (one debug line, a counter).
//
// Delivery is at-least-once with a window of microseconds: a row is
// marked sent right after the channel accepted it. Every message carries
// a stable id (e-mail Message-ID, webhook X-DiemDanh-Delivery, push Topic)
// so a receiver can drop the rare duplicate after a crash in that window.
package notify

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"
	_ "time/tzdata" // school time zones without the OS database

	"github.com/diemdanh/diemdanh/hub/ingest"
	"github.com/diemdanh/diemdanh/hub/store"
)

//go:embed messages/*.json
var messagesFS embed.FS

// Channels.
const (
	ChannelPush    = "push"
	ChannelEmail   = "email"
	ChannelWebhook = "webhook"
)

// Rules.
const (
	RuleArrival    = "arrival"
	RuleDeparture  = "departure"
	RuleNotArrived = "not_arrived"
	RuleTest       = "test"
)

// Message is one outbox row handed to a channel.
type Message struct {
	ID         int64
	DedupeKey  string
	Rule       string
	PupilID    string
	GuardianID int64
	Channel    string
	Target     string
	Lang       string
	Subject    string
	Body       string
	Payload    json.RawMessage
	EventAt    int64
	Attempts   int
}

// Sender delivers one message on one channel. An error wrapped with
// Permanent is not retried.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying (bad address, subscription gone).
func Permanent(err error) error { return permanentError{err} }

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool { var p permanentError; return errors.As(err, &p) }

// Stats are counters since start.
type Stats struct {
	Enqueued, Sent, Retried, Failed, Dropped, NoChannel int64
}

// Notifier owns the outbox: it turns stored events into messages and
// delivers them. It is an ingest.Listener.
type Notifier struct {
	cfg     Config
	db      *store.DB
	log     *slog.Logger
	now     func() time.Time
	senders map[string]Sender
	tmpl    map[string]*template.Template // lang + "/" + key
	vapid   VAPIDKeys

	poke     chan struct{}
	inflight sync.Map // outbox id -> struct{}
	outage   atomic.Bool
	stats    struct{ enq, sent, retried, failed, dropped, nochan atomic.Int64 }
	cutMu    sync.Mutex
}

// New opens the notifier: loads (or on first start generates and stores)
// the VAPID keys and builds the configured channels. now is the clock.
func New(ctx context.Context, cfg Config, db *store.DB, log *slog.Logger, now func() time.Time) (*Notifier, error) {
	if err := cfg.Validate("notify."); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	n := &Notifier{cfg: cfg, db: db, log: log.With("component", "notify"), now: now,
		senders: map[string]Sender{}, poke: make(chan struct{}, 1)}
	var err error
	if n.tmpl, err = loadTemplates(); err != nil {
		return nil, err
	}
	if n.vapid, err = loadOrCreateVAPID(ctx, db); err != nil {
		return nil, err
	}
	if cfg.SMTP.Addr != "" {
		n.senders[ChannelEmail] = NewEmailSender(cfg.SMTP)
	}
	if cfg.Webhook.URL != "" {
		n.senders[ChannelWebhook] = NewWebhookSender(cfg.Webhook, now)
	}
	if cfg.Push.Enabled {
		n.senders[ChannelPush] = &pushSender{n: n, client: &http.Client{}}
	}
	if err := n.initCursor(ctx); err != nil {
		return nil, err
	}
	return n, nil
}

// SetSender replaces or adds a channel (used by benchmarks and tests to
// point a channel at a loopback server with custom settings).
func (n *Notifier) SetSender(channel string, s Sender) { n.senders[channel] = s }

// VAPIDPublicKey is the application server key the browser subscribes with.
func (n *Notifier) VAPIDPublicKey() string { return n.vapid.Public }

// Channels lists the configured channels.
func (n *Notifier) Channels() []string {
	var out []string
	for _, c := range []string{ChannelPush, ChannelEmail, ChannelWebhook} {
		if n.senders[c] != nil {
			out = append(out, c)
		}
	}
	return out
}

// Stats returns counters since start.
func (n *Notifier) Stats() Stats {
	return Stats{n.stats.enq.Load(), n.stats.sent.Load(), n.stats.retried.Load(),
		n.stats.failed.Load(), n.stats.dropped.Load(), n.stats.nochan.Load()}
}

// EventStored implements ingest.Listener: it only pokes the worker; the
// worker reads the event back from the events table by cursor.
func (n *Notifier) EventStored(_ context.Context, _ ingest.StoredEvent) { n.Poke() }

// Poke wakes the worker without blocking.
func (n *Notifier) Poke() {
	select {
	case n.poke <- struct{}{}:
	default:
	}
}

// Run scans, delivers and checks cut-offs until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	poll := time.NewTicker(n.cfg.Poll)
	defer poll.Stop()
	cut := time.NewTicker(n.cfg.CutoffEvery)
	defer cut.Stop()
	n.step(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-n.poke:
		case <-poll.C:
		case <-cut.C:
			if err := n.CheckCutoffs(ctx); err != nil && ctx.Err() == nil {
				n.log.Warn("not-arrived check failed", "err", err)
			}
		}
		n.step(ctx)
	}
}

func (n *Notifier) step(ctx context.Context) {
	if err := n.SyncOnce(ctx); err != nil && ctx.Err() == nil {
		if !n.outage.Swap(true) {
			n.log.Warn("notification outage", "err", err)
		}
		return
	}
	if n.outage.Swap(false) {
		n.log.Info("notifications recovered")
	}
}

// SyncOnce turns new events into outbox rows and delivers every due
// message once (synchronously; for tests and the worker loop).
func (n *Notifier) SyncOnce(ctx context.Context) error {
	for {
		more, err := n.EnqueueEvents(ctx)
		if err != nil {
			return err
		}
		if !more {
			break
		}
	}
	for {
		k, err := n.DispatchOnce(ctx)
		if err != nil {
			return err
		}
		if k == 0 {
			return nil
		}
	}
}

// --- templates -------------------------------------------------------

// Vars are the fields message templates may use.
type Vars struct {
	Name, Class, Time, Gate, Date, PortalURL string
}

func loadTemplates() (map[string]*template.Template, error) {
	out := map[string]*template.Template{}
	for _, lang := range []string{"vi", "en"} {
		b, err := messagesFS.ReadFile("messages/" + lang + ".json")
		if err != nil {
			return nil, fmt.Errorf("notify: messages: %w", err)
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("notify: messages/%s.json: %w", lang, err)
		}
		for k, v := range m {
			t, err := template.New(k).Option("missingkey=error").Parse(v)
			if err != nil {
				return nil, fmt.Errorf("notify: messages/%s.json %s: %w", lang, k, err)
			}
			out[lang+"/"+k] = t
		}
	}
	return out, nil
}

// Render returns the subject and body of rule in lang (vi or en).
func (n *Notifier) Render(lang, rule string, v Vars) (subject, body string, err error) {
	if lang != "en" {
		lang = "vi"
	}
	var parts [2]string
	for i, suffix := range []string{".subject", ".body"} {
		t := n.tmpl[lang+"/"+rule+suffix]
		if t == nil {
			return "", "", fmt.Errorf("notify: no message %s%s in %s", rule, suffix, lang)
		}
		var sb strings.Builder
		if err := t.Execute(&sb, v); err != nil {
			return "", "", fmt.Errorf("notify: message %s: %w", rule, err)
		}
		parts[i] = sb.String()
	}
	return parts[0], parts[1], nil
}

// --- helpers ---------------------------------------------------------

var fallbackZone = time.FixedZone("ICT", 7*3600)

// Zone loads a school's time zone (Asia/Ho_Chi_Minh when unknown).
func Zone(name string) *time.Location {
	if name == "" {
		name = "Asia/Ho_Chi_Minh"
	}
	if loc, err := time.LoadLocation(name); err == nil {
		return loc
	}
	return fallbackZone
}

func nullStr(s sql.NullString) string { return s.String }
