package rot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opensphere/sphere/tlsutil"
)

// prepareStateDir creates dir (mode 0700) if it does not exist.
func prepareStateDir(dir string) error {
	if dir == "" {
		return errors.New("state directory not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	return nil
}

// writeFileAtomic replaces dir/name with data, mode 0600, so that after a
// crash or power loss the file holds either its old or its new content:
// temporary file, fsync, rename, fsync of the directory.
func writeFileAtomic(dir, name string, data []byte) error {
	return tlsutil.WriteFileAtomic(filepath.Join(dir, name), data, 0o600)
}

// readStateFile reads dir/name; a missing file is (nil, false, nil).
func readStateFile(dir, name string) ([]byte, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return b, true, nil
}
