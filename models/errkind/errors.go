package errkind

import (
	"errors"
	"fmt"
)

// Kind classifies engine and decoding errors so callers can react without
// matching strings (for example to map them to HTTP status codes).
type Kind int

// Error kinds returned by the face engine and the decoders.
const (
	Unknown      Kind = iota
	EmptyImage        // zero bytes or a zero-sized image
	CorruptImage      // the bytes do not decode as the claimed format
	Unsupported       // a format or pixel layout the path does not take (e.g. PNG on the JPEG-only path)
	TooLarge          // more pixels or bytes than the configured limit
	ModelMissing      // a model file is absent
	ModelCorrupt      // a model file fails its checksum or cannot be deserialised
	Invalid           // a payload or argument that fails validation
	Closed            // the engine was closed
)

var kindNames = map[Kind]string{
	Unknown: "unknown", EmptyImage: "empty_image", CorruptImage: "corrupt_image",
	Unsupported: "unsupported", TooLarge: "too_large", ModelMissing: "model_missing",
	ModelCorrupt: "model_corrupt", Invalid: "invalid", Closed: "closed",
}

func (k Kind) String() string {
	if s, ok := kindNames[k]; ok {
		return s
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is the typed error of the face engine and the decoders (faceengine,
// imagecheck, match). Op names the operation and Err holds the cause, if any.
type Error struct {
	Kind Kind
	Op   string
	Msg  string
	Err  error
}

func (e *Error) Error() string {
	s := e.Op + ": " + e.Kind.String()
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is lets errors.Is(err, &Error{Kind: K}) match on kind alone.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Op == "" && t.Msg == "" && t.Err == nil
}

// New returns an *Error of kind for op, its message formatted from format
// and args, wrapping cause (which may be nil).
func New(kind Kind, op string, cause error, format string, args ...any) error {
	return &Error{Kind: kind, Op: op, Msg: fmt.Sprintf(format, args...), Err: cause}
}

// Of returns the Kind of err, or Unknown when err is not an *Error.
func Of(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Unknown
}
