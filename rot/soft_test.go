package rot

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSoftStateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state") // created by OpenSoft
	r, err := OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.Kind() != KindSoft {
		t.Errorf("Kind = %q, want %q", r.Kind(), KindSoft)
	}
	if err := r.AdvanceCounter(1); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{softAKFile, softIdentityFile, softCounterFile} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	key, _ := os.ReadFile(filepath.Join(dir, softIdentityFile))
	if !strings.HasPrefix(string(key), "-----BEGIN PRIVATE KEY-----") {
		t.Errorf("identity key file is not PKCS#8 PEM: %.40q", key)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want 0700", fi.Mode().Perm())
	}
}

func TestSoftCounterFile(t *testing.T) {
	tests := []struct {
		name    string
		content string // "" means no file
		want    uint64
		wantErr bool
	}{
		{"ok/no file", "", 0, false},
		{"ok/value", "42\n", 42, false},
		{"error/garbage", "forty-two\n", 0, true},
		{"error/negative", "-1\n", 0, true},
		{"error/empty file", "\n", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.content != "" {
				if err := os.WriteFile(filepath.Join(dir, softCounterFile), []byte(tt.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			r, err := OpenSoft(dir)
			if tt.wantErr {
				if err == nil {
					r.Close()
					t.Fatalf("OpenSoft with counter file %q: got nil error", tt.content)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if got, err := r.Counter(); err != nil || got != tt.want {
				t.Errorf("Counter = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// A counter file that goes down (say, restored from a backup) under a
// running root of trust is refused, not believed.
func TestSoftCounterFileWentDown(t *testing.T) {
	dir := t.TempDir()
	r, err := OpenSoft(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.AdvanceCounter(9); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, softCounterFile), []byte("2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Counter(); err == nil {
		t.Errorf("Counter after the file went from 9 to 2: got nil error")
	}
	if err := r.AdvanceCounter(3); err == nil {
		t.Errorf("AdvanceCounter(3) after the file went from 9 to 2: got %v", err)
	}
	if err := os.Remove(filepath.Join(dir, softCounterFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Counter(); err == nil {
		t.Errorf("Counter after the file disappeared: got nil error")
	}
}

func TestSoftRefusesOtherKeys(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, softAKFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r, err := OpenSoft(dir); err == nil {
		r.Close()
		t.Fatalf("OpenSoft with a damaged key file: got nil error")
	}
}
