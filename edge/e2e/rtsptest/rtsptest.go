// Package rtsptest is a real RTSP server for tests, built on gortsplib: one
// publisher (a real encoder such as ffmpeg -f rtsp, ANNOUNCE and RECORD)
// feeds every reader (DESCRIBE, SETUP, PLAY over TCP), the way an IP
// camera serves its stream. Readers must authenticate (Digest or Basic)
// with the user and password the server was started with, as a camera
// asks; the publisher is not asked. Only tests import it.
package rtsptest

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/gortsplib/v4"
	"github.com/bluenviron/gortsplib/v4/pkg/auth"
	"github.com/bluenviron/gortsplib/v4/pkg/base"
	"github.com/bluenviron/gortsplib/v4/pkg/description"
	"github.com/bluenviron/gortsplib/v4/pkg/format"
	"github.com/pion/rtp"
)

const realm = "camera"

// digest is what IP cameras ask for: Digest with MD5.
var digest = []auth.ValidateMethod{auth.ValidateMethodDigestMD5}

// Server is a running RTSP server.
type Server struct {
	srv        *gortsplib.Server
	user, pass string
	nonce      string
	logf       func(format string, args ...any)

	mu        sync.Mutex
	stream    *gortsplib.ServerStream
	publisher *gortsplib.ServerSession

	plays, records, denied, packets atomic.Int64
}

// Start listens on addr (host:port on loopback). logf may be nil.
func Start(addr, user, pass string, logf func(format string, args ...any)) (*Server, error) {
	nonce, err := auth.GenerateNonce()
	if err != nil {
		return nil, fmt.Errorf("rtsptest: nonce: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	s := &Server{user: user, pass: pass, nonce: nonce, logf: logf}
	// No UDP addresses: a reader asking for UDP gets 461 and falls back to
	// TCP, as ffmpeg does.
	s.srv = &gortsplib.Server{Handler: s, RTSPAddress: addr, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second}
	if err := s.srv.Start(); err != nil {
		return nil, fmt.Errorf("rtsptest: listen %s: %w", addr, err)
	}
	return s, nil
}

// Close stops the server and drops every connection.
func (s *Server) Close() { s.srv.Close() }

// Plays is how many readers started playing.
func (s *Server) Plays() int64 { return s.plays.Load() }

// Records is how many publishers started recording.
func (s *Server) Records() int64 { return s.records.Load() }

// Denied is how many reader requests failed authentication.
func (s *Server) Denied() int64 { return s.denied.Load() }

// Packets is how many RTP packets the publisher sent.
func (s *Server) Packets() int64 { return s.packets.Load() }

// Publishing reports whether a publisher is recording now.
func (s *Server) Publishing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream != nil
}

// OnSessionClose ends the stream when its publisher goes.
func (s *Server) OnSessionClose(ctx *gortsplib.ServerHandlerOnSessionCloseCtx) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil && ctx.Session == s.publisher {
		s.stream.Close()
		s.stream, s.publisher = nil, nil
		s.logf("publisher gone: %v", ctx.Error)
	}
}

// check asks a reader for credentials.
func (s *Server) check(req *base.Request) *base.Response {
	if err := auth.Validate(req, s.user, s.pass, digest, realm, s.nonce); err != nil {
		if _, sent := req.Header["Authorization"]; sent {
			s.denied.Add(1)
		}
		return &base.Response{StatusCode: base.StatusUnauthorized,
			Header: base.Header{"WWW-Authenticate": auth.GenerateWWWAuthenticate(digest, realm, s.nonce)}}
	}
	return nil
}

// OnDescribe serves the publisher's stream to an authenticated reader.
func (s *Server) OnDescribe(ctx *gortsplib.ServerHandlerOnDescribeCtx) (*base.Response, *gortsplib.ServerStream, error) {
	if res := s.check(ctx.Request); res != nil {
		return res, nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, s.stream, nil
}

// OnAnnounce takes a new publisher, replacing any previous one.
func (s *Server) OnAnnounce(ctx *gortsplib.ServerHandlerOnAnnounceCtx) (*base.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stream != nil {
		s.stream.Close()
		s.publisher.Close()
	}
	s.stream = gortsplib.NewServerStream(s.srv, ctx.Description)
	s.publisher = ctx.Session
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnSetup sets up a publisher's or a reader's track.
func (s *Server) OnSetup(ctx *gortsplib.ServerHandlerOnSetupCtx) (*base.Response, *gortsplib.ServerStream, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ctx.Session == s.publisher {
		return &base.Response{StatusCode: base.StatusOK}, nil, nil
	}
	if res := s.check(ctx.Request); res != nil {
		return res, nil, nil
	}
	if s.stream == nil {
		return &base.Response{StatusCode: base.StatusNotFound}, nil, nil
	}
	return &base.Response{StatusCode: base.StatusOK}, s.stream, nil
}

// OnPlay starts a reader.
func (s *Server) OnPlay(ctx *gortsplib.ServerHandlerOnPlayCtx) (*base.Response, error) {
	if res := s.check(ctx.Request); res != nil {
		return res, nil
	}
	s.plays.Add(1)
	s.logf("reader playing")
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// OnRecord starts relaying the publisher's packets to the readers.
func (s *Server) OnRecord(ctx *gortsplib.ServerHandlerOnRecordCtx) (*base.Response, error) {
	s.mu.Lock()
	stream := s.stream
	s.mu.Unlock()
	if stream == nil {
		return &base.Response{StatusCode: base.StatusBadRequest}, nil
	}
	ctx.Session.OnPacketRTPAny(func(medi *description.Media, _ format.Format, pkt *rtp.Packet) {
		s.packets.Add(1)
		_ = stream.WritePacketRTP(medi, pkt)
	})
	s.records.Add(1)
	s.logf("publisher recording")
	return &base.Response{StatusCode: base.StatusOK}, nil
}

// Publish starts ffmpeg (/usr/bin/ffmpeg, or the one on PATH) publishing
// video from offset in real time (-re) as H.264 over RTSP/TCP to url, as a
// camera's encoder does. Its output goes to logw. The caller waits for or
// kills the returned command.
func Publish(ctx context.Context, video string, offset time.Duration, url string, logw io.Writer) (*exec.Cmd, error) {
	bin, err := exec.LookPath("ffmpeg")
	if err != nil {
		return nil, fmt.Errorf("rtsptest: ffmpeg is needed to publish a real stream (apt-get install ffmpeg): %w", err)
	}
	args := []string{"-hide_banner", "-loglevel", "warning", "-nostdin", "-re",
		"-ss", strconv.FormatFloat(offset.Seconds(), 'f', 3, 64), "-i", video, "-an",
		"-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "25", "-pix_fmt", "yuv420p",
		"-f", "rtsp", "-rtsp_transport", "tcp", url}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rtsptest: start ffmpeg: %w", err)
	}
	return cmd, nil
}
