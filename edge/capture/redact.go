package capture

import (
	"regexp"
	"strings"
)

// secretParam matches the password parameters some cameras take in the
// path or query (…?user=admin&password=…, …/user=admin&password=…).
var secretParam = regexp.MustCompile(`(?i)((?:password|passwd|pass|pwd)=)[^&;/?#]*`)

// Redact hides the password of a stream URL for logs, metrics and status:
// the user info's password (everything between the first ':' and the last
// '@' before the host, so a password holding '/', '@' or '#' is hidden
// too) and password parameters. A string without either comes back as is.
func Redact(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	rest := s[i+3:]
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if c := strings.Index(rest[:at], ":"); c >= 0 {
			user := rest[:c]
			if strings.ContainsAny(user, "/?#") { // an '@' after the host: keep nothing before it
				user = ""
			}
			rest = user + ":***@" + rest[at+1:]
		}
	}
	return s[:i+3] + secretParam.ReplaceAllString(rest, "${1}***")
}
