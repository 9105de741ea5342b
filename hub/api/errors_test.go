package api

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/diemdanh/diemdanh/models/conf"
	"github.com/gin-gonic/gin"
)

func TestFailMapsErrorsInOnePlace(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		code   Code
		field  string
		hidden string // must not appear in the body
	}{
		{"invalid with field", Invalid("id", "bad"), 400, CodeInvalid, "id", ""},
		{"wrapped api error", fmt.Errorf("roster: %w", &Error{Code: CodeConflict, Message: "exists"}), 409, CodeConflict, "", ""},
		{"conf field error", conf.Fieldf("payload", "malformed"), 400, CodeInvalid, "payload", ""},
		{"not found sentinel", ErrNotFound, 404, CodeNotFound, "", ""},
		{"sql no rows", fmt.Errorf("x: %w", sql.ErrNoRows), 404, CodeNotFound, "", ""},
		{"unauthenticated", ErrUnauthenticated, 401, CodeUnauthenticated, "", ""},
		{"forbidden", ErrForbidden, 403, CodeForbidden, "", ""},
		{"too large", Errorf(CodeTooLarge, "big"), 413, CodeTooLarge, "", ""},
		{"canceled", context.Canceled, 503, CodeUnavailable, "", ""},
		{"internal hides cause", errors.New("disk I/O error at /secret/path"), 500, CodeInternal, "", "/secret/path"},
		{"internal api error hides cause", Wrap(CodeInternal, errors.New("password=hunter2"), ""), 500, CodeInternal, "", "hunter2"},
	}
	gin.SetMode(gin.ReleaseMode)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			ctx, _ := gin.CreateTestContext(rec)
			ctx.Request = httptest.NewRequest("GET", "/x", nil)
			Fail(ctx, c.err)
			if rec.Code != c.status {
				t.Fatalf("status %d, want %d", rec.Code, c.status)
			}
			var b Body
			if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
				t.Fatal(err)
			}
			if b.Error != c.code || b.Field != c.field || b.Message == "" {
				t.Fatalf("body %+v", b)
			}
			if c.hidden != "" && strings.Contains(rec.Body.String(), c.hidden) {
				t.Fatalf("body leaks the cause: %s", rec.Body.String())
			}
			if c.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	// Every code has a status.
	for code := range statusOf {
		if code.Status() < 400 {
			t.Errorf("%s maps to %d", code, code.Status())
		}
	}
	if !errors.Is(fmt.Errorf("w: %w", &Error{Code: CodeNotFound, Message: "pupil x"}), ErrNotFound) {
		t.Error("errors.Is by code failed")
	}
}
