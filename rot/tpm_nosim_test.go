//go:build !cgo

package rot

import "testing"

// Without cgo there is no TPM simulator, and the shared tests run against
// the soft root of trust only.
func TestTPM(t *testing.T) {
	t.Skip("TPM tests need the TPM simulator, which needs cgo: run with CGO_ENABLED=1 and a C compiler")
}
