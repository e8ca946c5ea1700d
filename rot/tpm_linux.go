package rot

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"
)

// openDevice opens the TPM character device at path, or, if path is empty,
// /dev/tpmrm0 (the kernel's resource manager, which lets several processes
// share the TPM and flushes what a crashed process left loaded), falling
// back to /dev/tpm0 on kernels without one.
func openDevice(path string) (transport.TPMCloser, error) {
	if path != "" {
		t, err := linuxtpm.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open TPM %s: %w", path, err)
		}
		return t, nil
	}
	t, err := linuxtpm.Open("/dev/tpmrm0")
	if err == nil {
		return t, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open TPM /dev/tpmrm0: %w", err)
	}
	t, err2 := linuxtpm.Open("/dev/tpm0")
	if err2 != nil {
		return nil, fmt.Errorf("open TPM: /dev/tpmrm0: %v; /dev/tpm0: %w", err, err2)
	}
	return t, nil
}
