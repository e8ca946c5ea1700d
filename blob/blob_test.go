package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestFS(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	// A temporary file left by a crash is cleaned up at open.
	os.MkdirAll(filepath.Join(dir, "tmp"), 0o700)
	os.WriteFile(filepath.Join(dir, "tmp", "put-crashed"), []byte("partial"), 0o600)
	fs, err := NewFS(dir)
	if err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "tmp", "*")); len(left) != 0 {
		t.Errorf("temporary files left after open: %v", left)
	}
	data := bytes.Repeat([]byte("opensphere "), 100000)
	sum := sha256.Sum256(data)
	want := hex.EncodeToString(sum[:])
	sha, n, err := fs.Put(ctx, bytes.NewReader(data), 0)
	if err != nil || sha != want || n != int64(len(data)) {
		t.Fatalf("Put = %s, %d, %v; want %s, %d", sha, n, err, want, len(data))
	}
	if again, _, err := fs.Put(ctx, bytes.NewReader(data), 0); err != nil || again != sha {
		t.Fatalf("second Put = %s, %v", again, err)
	}
	o, err := fs.Open(ctx, sha)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Size() != int64(len(data)) {
		t.Errorf("Size = %d", o.Size())
	}
	part := make([]byte, 11)
	if _, err := o.ReadAt(part, 11*5); err != nil || string(part) != "opensphere " {
		t.Errorf("ReadAt = %q, %v", part, err)
	}
	got, _ := io.ReadAll(o)
	if !bytes.Equal(got, data) {
		t.Error("content differs")
	}

	// Over the limit: refused and nothing stored.
	other := bytes.Repeat([]byte{1}, 1000)
	if _, _, err := fs.Put(ctx, bytes.NewReader(other), 999); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put over the limit: %v", err)
	}
	osum := sha256.Sum256(other)
	if _, err := fs.Open(ctx, hex.EncodeToString(osum[:])); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused blob is stored: %v", err)
	}
	for _, bad := range []string{"", "../../etc/passwd", "ZZ", sha[:63], "A" + sha[1:]} {
		if _, err := fs.Open(ctx, bad); !errors.Is(err, ErrNotFound) {
			t.Errorf("Open(%q) = %v; want ErrNotFound", bad, err)
		}
	}
	if err := fs.Delete(ctx, sha); err != nil {
		t.Fatal(err)
	}
	if _, err := fs.Open(ctx, sha); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Delete: %v", err)
	}
	// A cancelled upload stores nothing.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := fs.Put(cctx, bytes.NewReader(data), 0); err == nil {
		t.Error("Put with a cancelled context succeeded")
	}
}
