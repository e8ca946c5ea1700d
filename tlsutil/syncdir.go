//go:build !windows

package tlsutil

import "os"

// SyncDir makes the entries of dir (a rename, a creation, a removal)
// durable: fsync of the directory itself.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
