package lever

import (
	"context"
	"os"
	"strings"
	"time"
)

// Who this instance is, from the environment leverd gives it (reference §4.4).
var (
	OwnEnvironment = os.Getenv("LEVEROS_ENVIRONMENT")
	OwnService     = os.Getenv("LEVEROS_SERVICE")
	OwnInstanceID  = os.Getenv("LEVEROS_INSTANCE_ID")
)

// IsChanMethod reports whether a method is streaming: its name ends in
// "Chan" or "_chan", or is "chan" (reference §2.7).
func IsChanMethod(name string) bool {
	return strings.HasSuffix(name, "Chan") || strings.HasSuffix(name, "_chan") || name == "chan"
}

// CallInfo describes the call a handler serves.
type CallInfo struct {
	URL               string // the lever-url as received
	Environment       string
	Service           string
	Resource          string // "" when none
	Method            string
	SourceEnvironment string    // the caller's environment for internal calls, else ""
	Deadline          time.Time // zero when none
}

type callInfoKey struct{}

// CallInfoFromContext returns the CallInfo of the call whose handler got ctx.
func CallInfoFromContext(ctx context.Context) (*CallInfo, bool) {
	ci, ok := ctx.Value(callInfoKey{}).(*CallInfo)
	return ci, ok
}
