package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/diemdanh/diemdanh/hub/store"
)

// ---- e-mail -----------------------------------------------------------

// EmailSender delivers over SMTP with net/smtp (STARTTLS when offered).
type EmailSender struct{ cfg SMTPConfig }

// NewEmailSender returns the e-mail channel.
func NewEmailSender(cfg SMTPConfig) *EmailSender { return &EmailSender{cfg: cfg} }

// MessageID is the stable Message-ID of an outbox row.
func MessageID(m Message) string {
	return fmt.Sprintf("<%d.%x@diemdanh>", m.ID, sha256.Sum256([]byte(m.DedupeKey)))
}

// Send implements Sender.
func (e *EmailSender) Send(ctx context.Context, m Message) error {
	if strings.ContainsAny(m.Target, "\r\n<>") || !strings.Contains(m.Target, "@") {
		return Permanent(fmt.Errorf("email: bad address %q", m.Target))
	}
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", e.cfg.Addr)
	if err != nil {
		return fmt.Errorf("email: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	host, _, _ := net.SplitHostPort(e.cfg.Addr)
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("email: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host}); err != nil {
			return fmt.Errorf("email: starttls: %w", err)
		}
	} else if e.cfg.StartTLS {
		return fmt.Errorf("email: server does not offer STARTTLS")
	}
	if e.cfg.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", e.cfg.Username, e.cfg.Password, host)); err != nil {
			return Permanent(fmt.Errorf("email: auth: %w", err))
		}
	}
	if err := c.Mail(e.cfg.From); err != nil {
		return fmt.Errorf("email: MAIL: %w", err)
	}
	if err := c.Rcpt(m.Target); err != nil {
		if isPermanentSMTP(err) {
			return Permanent(fmt.Errorf("email: RCPT: %w", err))
		}
		return fmt.Errorf("email: RCPT: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("email: DATA: %w", err)
	}
	if _, err := w.Write(buildMail(e.cfg.From, m)); err != nil {
		return fmt.Errorf("email: write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("email: end of data: %w", err)
	}
	// Accepted (250 after DATA). Say goodbye without delaying the caller,
	// which marks the message sent: the shorter that window, the rarer a
	// duplicate after a crash.
	ok = true
	go func() { _ = c.Quit(); c.Close() }()
	return nil
}

func isPermanentSMTP(err error) bool {
	s := err.Error()
	return len(s) >= 1 && s[0] == '5'
}

func buildMail(from string, m Message) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: DiemDanh <%s>\r\n", from)
	fmt.Fprintf(&b, "To: <%s>\r\n", m.Target)
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", m.Subject))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", MessageID(m))
	fmt.Fprintf(&b, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Content-Language: %s\r\n", m.Lang)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(m.Body + "\r\n"))
	_ = qp.Close()
	return b.Bytes()
}

// ---- webhook ----------------------------------------------------------

// Webhook headers.
const (
	HeaderTimestamp = "X-DiemDanh-Timestamp" // Unix seconds
	HeaderSignature = "X-DiemDanh-Signature" // "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body))
	HeaderDelivery  = "X-DiemDanh-Delivery"  // stable per message: dedupe on it
)

// WebhookSender POSTs the message JSON, signed.
type WebhookSender struct {
	cfg    WebhookConfig
	client *http.Client
	now    func() time.Time
}

// NewWebhookSender returns the webhook channel.
func NewWebhookSender(cfg WebhookConfig, now func() time.Time) *WebhookSender {
	return &WebhookSender{cfg: cfg, client: &http.Client{}, now: now}
}

// Sign returns the signature header value for body at timestamp ts.
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte("."))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a signature and that ts is within maxAge of now.
func Verify(secret string, tsHeader, sigHeader string, body []byte, now time.Time, maxAge time.Duration) error {
	ts, err := strconv.ParseInt(tsHeader, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook: bad timestamp")
	}
	if d := now.Sub(time.Unix(ts, 0)); d > maxAge || d < -maxAge {
		return fmt.Errorf("webhook: timestamp too old or in the future")
	}
	if !hmac.Equal([]byte(Sign(secret, ts, body)), []byte(sigHeader)) {
		return fmt.Errorf("webhook: bad signature")
	}
	return nil
}

// Send implements Sender.
func (w *WebhookSender) Send(ctx context.Context, m Message) error {
	body := []byte(m.Payload)
	ts := w.now().Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return Permanent(fmt.Errorf("webhook: %w", err))
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secret, ts, body))
	req.Header.Set(HeaderDelivery, m.DedupeKey)
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == 408 || resp.StatusCode == 429 || resp.StatusCode >= 500:
		return fmt.Errorf("webhook: HTTP %d", resp.StatusCode)
	default:
		return Permanent(fmt.Errorf("webhook: HTTP %d", resp.StatusCode))
	}
}

// ---- web push ---------------------------------------------------------

var errGone = errors.New("push subscription gone")

// VAPIDKeys are the application server keys (base64url).
type VAPIDKeys struct{ Public, Private string }

func loadOrCreateVAPID(ctx context.Context, db *store.DB) (VAPIDKeys, error) {
	var k VAPIDKeys
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT (SELECT value FROM meta WHERE key = 'notify.vapid_public'),
			(SELECT value FROM meta WHERE key = 'notify.vapid_private')`).Scan(&k.Public, &k.Private)
		if err == nil && k.Public != "" && k.Private != "" {
			return nil
		}
		priv, pub, err := webpush.GenerateVAPIDKeys()
		if err != nil {
			return err
		}
		k = VAPIDKeys{Public: pub, Private: priv}
		_, err = tx.ExecContext(ctx, `INSERT OR REPLACE INTO meta(key, value) VALUES ('notify.vapid_public', ?), ('notify.vapid_private', ?)`, pub, priv)
		return err
	})
	if err != nil {
		// NULL scan on first start lands here only if generation failed.
		return k, fmt.Errorf("notify: vapid keys: %w", err)
	}
	return k, nil
}

type pushSender struct {
	n      *Notifier
	client *http.Client
}

// Send implements Sender: the target is a push_subscriptions id.
func (p *pushSender) Send(ctx context.Context, m Message) error {
	id, _ := strconv.ParseInt(m.Target, 10, 64)
	var sub webpush.Subscription
	err := p.n.db.R.QueryRowContext(ctx, `SELECT endpoint, p256dh, auth FROM push_subscriptions WHERE id = ?`, id).
		Scan(&sub.Endpoint, &sub.Keys.P256dh, &sub.Keys.Auth)
	if errors.Is(err, sql.ErrNoRows) {
		return Permanent(fmt.Errorf("push: %w (unsubscribed)", errGone))
	}
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	cfg := p.n.cfg.Push
	msg, _ := json.Marshal(map[string]string{"title": m.Subject, "body": m.Body, "tag": m.DedupeKey, "url": p.n.cfg.PortalURL})
	resp, err := webpush.SendNotificationWithContext(ctx, msg, &sub, &webpush.Options{
		// webpush-go adds "mailto:" itself unless the subscriber is an https: URL.
		HTTPClient: p.client, Subscriber: strings.TrimPrefix(cfg.Subscriber, "mailto:"), TTL: cfg.TTL, Urgency: webpush.UrgencyHigh,
		VAPIDPublicKey: p.n.vapid.Public, VAPIDPrivateKey: p.n.vapid.Private, RecordSize: 3070,
	})
	if err != nil {
		return fmt.Errorf("push: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		_, _ = p.n.db.W.ExecContext(context.WithoutCancel(ctx), `DELETE FROM push_subscriptions WHERE id = ?`, id)
		return Permanent(fmt.Errorf("push: %w (HTTP %d)", errGone, resp.StatusCode))
	case resp.StatusCode == 429 || resp.StatusCode >= 500:
		return fmt.Errorf("push: HTTP %d", resp.StatusCode)
	default:
		return Permanent(fmt.Errorf("push: HTTP %d", resp.StatusCode))
	}
}
