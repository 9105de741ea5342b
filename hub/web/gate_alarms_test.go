package web

import (
	"strings"
	"testing"
)

// TestAdminOverviewGateAlarms: a gate's lost camera, full disk (with the
// events it refused) and a clock off beyond ingest's warning show on the
// admin overview as badges, and only while they hold.
func TestAdminOverviewGateAlarms(t *testing.T) {
	f := newFixture(t)
	c := f.client(t)
	c.login("admin")
	cases := []struct {
		name      string
		heartbeat string
		clockWarn int
		want      []string
		wantNot   []string
	}{
		{"healthy", `{"schema":1,"gate_id":"g1","fps":12.5,"outbox_depth":3,"camera_online":true}`, 0,
			nil, []string{"camera-off", "disk-full", "clock-warn"}},
		{"camera lost", `{"schema":1,"gate_id":"g1","fps":0,"outbox_depth":3,"camera_online":false}`, 0,
			[]string{`class="badge bad camera-off">Mất camera<`}, []string{"disk-full", "clock-warn"}},
		{"disk full", `{"schema":1,"gate_id":"g1","fps":12.5,"outbox_depth":40,"camera_online":true,"disk_full":true,"outbox_refused":7}`, 0,
			[]string{`class="outbox">40 <span class="badge bad disk-full">Đầy đĩa: đã từ chối 7 lượt<`}, []string{"camera-off", "clock-warn"}},
		{"clock off", `{"schema":1,"gate_id":"g1","fps":12.5,"outbox_depth":0,"camera_online":true}`, 1,
			[]string{`class="badge bad clock-warn">Đồng hồ cổng lệch`}, []string{"camera-off", "disk-full"}},
		{"no heartbeat yet", ``, 0, nil, []string{"camera-off", "disk-full", "clock-warn"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := f.db.W.Exec(`UPDATE gates SET last_heartbeat = ?, clock_warn = ? WHERE id = 'g1'`, tc.heartbeat, tc.clockWarn); err != nil {
				t.Fatal(err)
			}
			resp, body := c.do("GET", "/admin", nil, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("admin %d", resp.StatusCode)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Errorf("overview lacks %q", w)
				}
			}
			for _, w := range tc.wantNot {
				if strings.Contains(body, w) {
					t.Errorf("overview shows %q", w)
				}
			}
		})
	}
}
