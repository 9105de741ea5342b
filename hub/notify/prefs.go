package notify

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
)

// Prefs are one guardian's notification settings as the portal shows them.
type Prefs struct {
	GuardianID    int64
	Lang          string
	Enabled       map[string]bool // channel -> on
	Email, Phone  string
	Subscriptions int
}

// GetPrefs reads a guardian's settings.
func (n *Notifier) GetPrefs(ctx context.Context, guardianID int64) (Prefs, error) {
	p := Prefs{GuardianID: guardianID, Lang: "vi"}
	err := n.db.R.QueryRowContext(ctx, `SELECT g.email, g.phone, COALESCE(l.lang, 'vi'),
		(SELECT COUNT(*) FROM push_subscriptions s WHERE s.guardian_id = g.id)
		FROM guardians g LEFT JOIN notify_guardian_lang l ON l.guardian_id = g.id WHERE g.id = ?`, guardianID).
		Scan(&p.Email, &p.Phone, &p.Lang, &p.Subscriptions)
	if err != nil {
		return p, fmt.Errorf("notify: prefs: %w", err)
	}
	p.Enabled, err = loadPrefs(ctx, n.db.R, guardianID)
	return p, err
}

// SetPrefs stores channel switches and the message language.
func (n *Notifier) SetPrefs(ctx context.Context, guardianID int64, lang string, enabled map[string]bool) error {
	if lang != "vi" && lang != "en" {
		return fmt.Errorf("notify: language must be vi or en")
	}
	now := n.now().UnixMilli()
	return n.db.Tx(ctx, func(tx *sql.Tx) error {
		for c, on := range enabled {
			if c != ChannelPush && c != ChannelEmail && c != ChannelWebhook {
				return fmt.Errorf("notify: unknown channel %q", c)
			}
			v := 0
			if on {
				v = 1
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO notify_prefs(guardian_id, channel, enabled, updated_at)
				VALUES (?, ?, ?, ?) ON CONFLICT(guardian_id, channel) DO UPDATE SET enabled = excluded.enabled,
				updated_at = excluded.updated_at`, guardianID, c, v, now); err != nil {
				return fmt.Errorf("notify: prefs: %w", err)
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO notify_guardian_lang(guardian_id, lang) VALUES (?, ?)
			ON CONFLICT(guardian_id) DO UPDATE SET lang = excluded.lang`, guardianID, lang); err != nil {
			return fmt.Errorf("notify: prefs: %w", err)
		}
		return nil
	})
}

// Subscribe stores a browser's Web Push subscription for a guardian.
func (n *Notifier) Subscribe(ctx context.Context, guardianID int64, endpoint, p256dh, auth string) error {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(u.Host, "127.0.0.1"))) || len(endpoint) > 2048 {
		return fmt.Errorf("notify: push endpoint must be an https URL")
	}
	if len(p256dh) < 80 || len(p256dh) > 100 || len(auth) < 16 || len(auth) > 32 {
		return fmt.Errorf("notify: push keys have the wrong length")
	}
	_, err = n.db.W.ExecContext(ctx, `INSERT INTO push_subscriptions(guardian_id, endpoint, p256dh, auth, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT(endpoint) DO UPDATE SET guardian_id = excluded.guardian_id,
		p256dh = excluded.p256dh, auth = excluded.auth`, guardianID, endpoint, p256dh, auth, n.now().UnixMilli())
	if err != nil {
		return fmt.Errorf("notify: subscribe: %w", err)
	}
	return nil
}

// SetClassRule configures the "not arrived" rule of a class (cutoff "" =
// the class's absence cut-off).
func (n *Notifier) SetClassRule(ctx context.Context, classID string, enabled bool, cutoff string) error {
	v := 0
	if enabled {
		v = 1
	}
	_, err := n.db.W.ExecContext(ctx, `INSERT INTO notify_class_rules(class_id, not_arrived_enabled, cutoff) VALUES (?, ?, ?)
		ON CONFLICT(class_id) DO UPDATE SET not_arrived_enabled = excluded.not_arrived_enabled, cutoff = excluded.cutoff`,
		classID, v, cutoff)
	if err != nil {
		return fmt.Errorf("notify: class rule: %w", err)
	}
	return nil
}
