package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Prefix is the versioned API root.
const Prefix = "/api/v1"

// Server owns the hub's one gin engine. Components add their routes to V1
// (or Engine for pages outside the API) and their metrics to Registry.
type Server struct {
	Engine   *gin.Engine
	V1       *gin.RouterGroup
	Registry *prometheus.Registry
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	auth    Authorizer
	health  map[string]func(context.Context) error
	spec    map[string]any // OpenAPI paths added by components
	reqs    *prometheus.CounterVec
	latency *prometheus.HistogramVec
}

type ctxKey int

const (
	keyLogger = "diemdanh.logger"
	keyAuth   = "diemdanh.authorizer"
)

// NewServer builds the engine with recovery, metrics, /healthz, /metrics
// and /api/v1/openapi.json. auth may be nil: then LocalOnly is used and the
// caller must bind to loopback. The engine trusts no proxy: the client IP
// (c.ClientIP(), used by the login rate limits and the audit log) is the
// connection's address until SetTrustedProxies names the reverse proxies
// whose X-Forwarded-For / X-Real-IP headers count.
func NewServer(log *slog.Logger, now func() time.Time, auth Authorizer) *Server {
	gin.SetMode(gin.ReleaseMode)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	if auth == nil {
		auth = LocalOnly{}
	}
	s := &Server{
		Engine:   gin.New(),
		Registry: prometheus.NewRegistry(),
		log:      log,
		now:      now,
		auth:     auth,
		health:   map[string]func(context.Context) error{},
		spec:     map[string]any{},
	}
	// gin trusts X-Forwarded-For from anyone by default; with nil it never
	// reads the headers (cannot fail).
	_ = s.Engine.SetTrustedProxies(nil)
	s.Engine.ForwardedByClientIP = false
	s.Engine.TrustedPlatform = ""
	s.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.reqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "diemdanh_http_requests_total", Help: "HTTP requests by route and status.",
	}, []string{"method", "route", "status"})
	s.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "diemdanh_http_request_seconds", Help: "HTTP request latency by route.",
		Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5},
	}, []string{"method", "route"})
	s.Registry.MustRegister(s.reqs, s.latency)
	s.Engine.Use(s.recovery, s.middleware)
	s.Engine.GET("/healthz", s.healthz)
	s.Engine.GET("/metrics", gin.WrapH(promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{})))
	s.V1 = s.Engine.Group(Prefix)
	s.V1.GET("/openapi.json", s.openapi)
	return s
}

// SetTrustedProxies makes the engine take the client IP from the
// X-Forwarded-For or else X-Real-IP header, but only on requests whose connection comes from one of
// proxies (IPs or CIDRs). X-Forwarded-For is read right to left, skipping
// trusted proxies, so a client cannot forge its address by sending the
// header itself through a proxy that appends to it. Empty: trust none.
// Call it before serving.
func (s *Server) SetTrustedProxies(proxies []string) error {
	if len(proxies) == 0 {
		proxies = nil
	}
	s.Engine.RemoteIPHeaders = []string{"X-Forwarded-For", "X-Real-IP"}
	s.Engine.ForwardedByClientIP = proxies != nil
	if err := s.Engine.SetTrustedProxies(proxies); err != nil {
		_ = s.Engine.SetTrustedProxies(nil)
		s.Engine.ForwardedByClientIP = false
		return fmt.Errorf("api: trusted proxies: %w", err)
	}
	return nil
}

// SetAuthorizer replaces the access-control hook (hub/auth).
func (s *Server) SetAuthorizer(a Authorizer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = a
}

// HasRealAuth reports whether an Authorizer other than LocalOnly is set;
// without one the hub must bind to loopback only.
func (s *Server) HasRealAuth() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, local := s.auth.(LocalOnly)
	return !local
}

// AddHealth registers a readiness check reported by /healthz.
func (s *Server) AddHealth(name string, check func(context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health[name] = check
}

func (s *Server) recovery(c *gin.Context) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "path", c.Request.URL.Path, "panic", fmt.Sprint(r))
			Fail(c, Errorf(CodeInternal, "internal error"))
		}
	}()
	c.Next()
}

func (s *Server) middleware(c *gin.Context) {
	start := time.Now()
	c.Set(keyLogger, s.log)
	s.mu.Lock()
	c.Set(keyAuth, s.auth)
	s.mu.Unlock()
	c.Next()
	route := c.FullPath()
	if route == "" {
		route = "unmatched"
	}
	s.reqs.WithLabelValues(c.Request.Method, route, strconv.Itoa(c.Writer.Status())).Inc()
	s.latency.WithLabelValues(c.Request.Method, route).Observe(time.Since(start).Seconds())
}

func loggerOf(c *gin.Context) *slog.Logger {
	if v, ok := c.Get(keyLogger); ok {
		if l, ok := v.(*slog.Logger); ok {
			return l
		}
	}
	return nil
}

func (s *Server) healthz(c *gin.Context) {
	s.mu.Lock()
	checks := make(map[string]func(context.Context) error, len(s.health))
	for k, v := range s.health {
		checks[k] = v
	}
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.Request.Context(), 2*time.Second)
	defer cancel()
	out := map[string]string{}
	ok := true
	for name, check := range checks {
		if err := check(ctx); err != nil {
			out[name] = err.Error()
			ok = false
		} else {
			out[name] = "ok"
		}
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	c.JSON(status, gin.H{"ok": ok, "checks": out, "time": s.now().UTC().Format(time.RFC3339)})
}

// Serve runs the HTTP server on ln until ctx is done, then shuts it down
// gracefully (stop accepting, finish in-flight requests up to grace).
func (s *Server) Serve(ctx context.Context, ln net.Listener, grace time.Duration) error {
	srv := &http.Server{Handler: s.Engine, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	<-errc
	return nil
}

// JSON writes v as JSON with status 200 (helper for handlers).
func JSON(c *gin.Context, v any) { c.JSON(http.StatusOK, v) }

// BindJSON decodes the request body strictly (unknown fields are errors)
// into dst, limited to max bytes.
func BindJSON(c *gin.Context, dst any, max int64) error {
	if max <= 0 {
		max = 1 << 20
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, max))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var mbe *http.MaxBytesError
		if errorsAs(err, &mbe) {
			return Errorf(CodeTooLarge, "body exceeds %d bytes", max)
		}
		return Invalid("body", "malformed JSON: %v", err)
	}
	return nil
}
