package fetch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/opensphere/sphere/tlsutil"
)

// journal is the sidecar of an Assemble's partial file: which package the
// .part belongs to, where its header ends, and how many chunks of the
// payload after it are written, verified and synced. It is replaced
// atomically (write, sync, rename) and only after the .part is synced, so
// it never claims more than the .part holds.
type journal struct {
	PackageSHA256  string `json:"package_sha256"`
	PackageSize    int64  `json:"package_size"`
	HeaderSize     int64  `json:"header_size"`
	VerifiedChunks int    `json:"verified_chunks"`
}

// maxJournalSize bounds what readJournal reads: a real one is ~200 bytes.
const maxJournalSize = 4 << 10

// readJournal returns the journal at path, or nil when there is none or it
// is unreadable (then the .part is not trusted and the download starts
// over, which is safe).
func readJournal(path string) *journal {
	data, err := os.ReadFile(path)
	if err != nil || len(data) > maxJournalSize {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var j journal
	if err := dec.Decode(&j); err != nil || j.HeaderSize <= 0 || j.VerifiedChunks < 0 {
		return nil
	}
	return &j
}

// writeJournal replaces the journal at path with j, atomically.
func writeJournal(path string, j *journal) error {
	data, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = tlsutil.SyncDir(filepath.Dir(path))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}
