//go:build !linux

package rot

import (
	"errors"

	"github.com/google/go-tpm/tpm2/transport"
)

// openDevice is the fallback for systems other than Linux, where OpenSphere
// does not open TPM devices: pass TPMConfig.Transport instead.
func openDevice(string) (transport.TPMCloser, error) {
	return nil, errors.New("opening a TPM device is supported on Linux only; set TPMConfig.Transport")
}
