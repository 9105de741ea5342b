package app

import (
	"errors"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
)

func TestTrustedProxiesConfig(t *testing.T) {
	if d := Default(); len(d.HTTP.TrustedProxies) != 0 {
		t.Fatalf("default trusts proxies %v, want none", d.HTTP.TrustedProxies)
	}
	c := Default()
	c.HTTP.TrustedProxies = []string{"127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid proxies refused: %v", err)
	}
	for _, bad := range []string{"10.0.0.0/33", "proxy.local", "", "10.0.0.1/"} {
		c.HTTP.TrustedProxies = []string{"127.0.0.1", bad}
		var fe *conf.FieldError
		if err := c.Validate(); !errors.As(err, &fe) || fe.Field != "http.trusted_proxies[1]" {
			t.Errorf("%q: want an error naming http.trusted_proxies[1], got %v", bad, err)
		}
	}
	if err := conf.DecodeYAML([]byte("http:\n  trusted_proxies: [\"192.0.2.1\"]\n"), &c); err != nil || len(c.HTTP.TrustedProxies) != 1 {
		t.Fatalf("YAML key http.trusted_proxies: %v %v", err, c.HTTP.TrustedProxies)
	}
}
