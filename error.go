// Package sphere holds OpenSphere's domain model: the types the security
// service stores (tenants, users, products, device groups, devices, audit
// entries), the rules that make them valid, and the one application error
// type that every layer returns. It has no I/O; storage lives in package
// store, the HTTP API in package server and the command line in package cli.
package sphere

import (
	"errors"
	"fmt"
)

// Error codes. Each maps to exactly one HTTP status in package server.
const (
	EInvalid         = "invalid_argument"    // the request is malformed or a value breaks a rule
	EUnauthenticated = "unauthenticated"     // no or unknown credentials
	EPermission      = "permission_denied"   // authenticated, but the role does not allow it
	ENotFound        = "not_found"           // no such resource (or not visible to the caller)
	EConflict        = "conflict"            // the resource exists or its state forbids the change
	EPrecondition    = "failed_precondition" // the change needs something else to happen first
	ETooLarge        = "payload_too_large"   // the request body exceeds the limit
	EUnsupported     = "unsupported_media_type"
	EInternal        = "internal"    // a bug or an unavailable dependency; details are only logged
	EUnavailable     = "unavailable" // the service is shutting down or not ready
)

// Error is the application error: a machine-readable Code and a Message that
// is safe to show to the caller. Internal causes never go into Message; wrap
// them with fmt.Errorf and they are logged, not sent.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf returns an *Error with the given code and a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EInternal
// for any other non-nil error, and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the caller-safe message of err: the message of its
// *Error, or a generic one for internal errors so that details never leak.
func ErrorMessage(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error; the request id in the logs has the details"
}
