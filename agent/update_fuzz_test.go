package agent

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// tarOf builds a tar from headers; regular files get body as content.
func tarOf(t testing.TB, body string, hs ...*tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func TestUntar(t *testing.T) {
	dirH := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeDir, Mode: 0o755} }
	file := func(n string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeReg, Mode: 0o6755} }
	link := func(n, to string) *tar.Header { return &tar.Header{Name: n, Typeflag: tar.TypeSymlink, Linkname: to} }
	cases := []struct {
		name    string
		headers []*tar.Header
		max     int64
		err     string // "" for ok
	}{
		{"ok", []*tar.Header{dirH("bin/"), file("bin/app"), link("bin/a", "app"), file("app_manifest.json")}, 1 << 20, ""},
		{"error/absolute", []*tar.Header{file("/etc/passwd")}, 1 << 20, "absolute"},
		{"error/dot dot", []*tar.Header{file("../x")}, 1 << 20, "leaves the app directory"},
		{"error/dot dot inside", []*tar.Header{dirH("a/"), file("a/../../x")}, 1 << 20, "not a clean path"},
		{"error/link out", []*tar.Header{link("l", "../../etc")}, 1 << 20, "leaves the app directory"},
		{"error/absolute link", []*tar.Header{link("l", "/etc")}, 1 << 20, "must be relative"},
		{"error/write through a link", []*tar.Header{dirH("d/"), link("l", "d"), file("l/x")}, 1 << 20, "not an earlier directory"},
		{"error/device", []*tar.Header{{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, 1 << 20, "of type"},
		{"error/hard link", []*tar.Header{file("a"), {Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}}, 1 << 20, "of type"},
		{"error/fifo", []*tar.Header{{Name: "f", Typeflag: tar.TypeFifo}}, 1 << 20, "of type"},
		{"error/twice", []*tar.Header{file("a"), file("a")}, 1 << 20, "twice"},
		{"error/no parent", []*tar.Header{file("missing/a")}, 1 << 20, "not an earlier directory"},
		{"error/too large", []*tar.Header{file("a"), file("b")}, 10, "larger than 10 bytes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			err := untar(bytes.NewReader(tarOf(t, "hello!", c.headers...)), dir, c.max)
			if c.err == "" {
				if err != nil {
					t.Fatalf("untar: %v", err)
				}
				fi, err := os.Stat(filepath.Join(dir, "bin", "app"))
				if err != nil || fi.Mode().Perm() != 0o755 || fi.Mode()&(os.ModeSetuid|os.ModeSetgid) != 0 {
					t.Errorf("bin/app: %v, %v; want 0755 without setuid/setgid", fi.Mode(), err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("untar: %v; want an error with %q", err, c.err)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("a refused payload left %s behind", dir)
			}
		})
	}
}

// FuzzUntar: whatever the payload, untar either unpacks it inside dir or
// fails and leaves nothing; nothing is ever written outside dir.
func FuzzUntar(f *testing.F) {
	f.Add(appTar(f, "exec sleep 1"))
	f.Add(tarOf(f, "x", &tar.Header{Name: "../x", Typeflag: tar.TypeReg}))
	f.Add(tarOf(f, "x", &tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../.."}))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		root := t.TempDir()
		dir := filepath.Join(root, "app")
		err := untar(bytes.NewReader(data), dir, 1<<20)
		entries, _ := os.ReadDir(root)
		if len(entries) > 1 || (len(entries) == 1 && entries[0].Name() != "app") {
			t.Fatalf("untar wrote outside its directory: %v", entries)
		}
		if err != nil {
			if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
				t.Fatalf("a refused payload left %s behind (%v)", dir, err)
			}
			return
		}
		filepath.WalkDir(dir, func(p string, d os.DirEntry, _ error) error {
			if d != nil && d.Type()&(os.ModeDevice|os.ModeNamedPipe|os.ModeSocket) != 0 {
				t.Fatalf("untar made a special file %s", p)
			}
			if d != nil && d.Type()&os.ModeSymlink != 0 {
				to, _ := filepath.EvalSymlinks(p)
				if to != "" && !strings.HasPrefix(to, dir) {
					t.Fatalf("link %s resolves outside: %s", p, to)
				}
			}
			return nil
		})
	})
}

func validJournal() []byte {
	j := newJournal()
	j.Components[testApp] = installed{Kind: "app", ComponentID: testApp, ImageID: strings.Repeat("ab", 32), Name: "blinky", Version: "1", SecurityVersion: 2}
	j.Floors[testApp] = 2
	b, _ := json.Marshal(j)
	return b
}

func TestParseJournal(t *testing.T) {
	ok := validJournal()
	if _, err := parseJournal(ok); err != nil {
		t.Fatalf("valid journal: %v", err)
	}
	for name, data := range map[string]string{
		"error/format":          `{"format":2}`,
		"error/unknown field":   `{"format":1,"x":1}`,
		"error/trailing":        string(ok) + "{}",
		"error/step":            `{"format":1,"txn":{"step":"dancing","target":{"image_id":"` + strings.Repeat("ab", 32) + `","component_id":"` + testApp + `","kind":"app"}}}`,
		"error/os without slot": `{"format":1,"txn":{"step":"downloading","target":{"image_id":"` + strings.Repeat("ab", 32) + `","component_id":"` + testApp + `","kind":"os"}}}`,
		"error/component key":   `{"format":1,"components":{"x":{"kind":"app","component_id":"` + testApp + `","image_id":"` + strings.Repeat("ab", 32) + `"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseJournal([]byte(data)); err == nil {
				t.Errorf("parseJournal accepted %s", data)
			}
		})
	}
}

// FuzzParseJournal: a journal is either refused or round-trips.
func FuzzParseJournal(f *testing.F) {
	f.Add(validJournal())
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`{"format":1,"txn":{"step":"armed","slot":"b","target":{"kind":"os"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		j, err := parseJournal(data)
		if err != nil {
			return
		}
		again, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := parseJournal(again); err != nil {
			t.Fatalf("a journal that parsed does not parse after writing: %v\n%s", err, again)
		}
	})
}
