package localapi

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/supervisor"
)

// serveAdmin serves an admin API with a real supervisor running one app on
// a socket anyone may connect to (so that the uid check, not the file mode,
// is what a non-root caller meets).
func serveAdmin(t *testing.T) (socket string, sup *supervisor.Supervisor) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("peer credentials are read on Linux only")
	}
	// Not t.TempDir: its parent is 0700, which would stop a non-root
	// caller before the socket does.
	dir, err := os.MkdirTemp("", "localapi-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	appDir := filepath.Join(dir, "app")
	os.Mkdir(appDir, 0o755)
	os.WriteFile(filepath.Join(appDir, "run.sh"), []byte("#!/bin/sh\necho up\nexec sleep 60\n"), 0o755)
	sup = supervisor.New(supervisor.Config{})
	t.Cleanup(sup.Close)
	sup.Set([]supervisor.App{{ComponentID: "c1", ImageID: "img", Version: "1.0.0", Dir: appDir,
		Manifest: image.AppManifest{SchemaVersion: 1, Name: "blinky", ComponentId: "c1", EntryPoint: "/run.sh"}}})
	socket = filepath.Join(dir, "admin.sock")
	l, err := Listen(socket, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	adm := &Admin{Status: func() Status {
		return Status{DeviceID: "dev", Protections: []Protection{{Name: "landlock", Active: true}}}
	}, Apps: sup, UpdateCheck: func(context.Context) (any, error) { return map[string]string{"result": "up to date"}, nil }}
	go func() { done <- Serve(ctx, l, adm.Handler()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return socket, sup
}

func TestAdminAsRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the admin socket answers root only; run the tests as root (CI does)")
	}
	socket, _ := serveAdmin(t)
	ctx := context.Background()
	var st Status
	if err := Call(ctx, socket, "GET", "/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if st.DeviceID != "dev" || len(st.Apps) != 1 || st.Apps[0].Name != "blinky" || len(st.Protections) != 1 {
		t.Fatalf("status = %+v", st)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var logs struct{ Lines []string }
		if err := Call(ctx, socket, "GET", "/v1/apps/c1/logs?lines=5", &logs); err != nil {
			t.Fatal(err)
		}
		if len(logs.Lines) == 1 && logs.Lines[0] == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs = %q", logs.Lines)
		}
	}
	if err := Call(ctx, socket, "POST", "/v1/apps/c1/stop", nil); err != nil {
		t.Fatal(err)
	}
	var apps []App
	Call(ctx, socket, "GET", "/v1/apps", &apps)
	if apps[0].State != supervisor.StateStopped {
		t.Fatalf("after stop: %+v", apps[0])
	}
	if err := Call(ctx, socket, "POST", "/v1/apps/c1/start", nil); err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ method, path, want string }{
		"error/unknown app":   {"POST", "/v1/apps/nope/start", "no app nope"},
		"error/unknown logs":  {"GET", "/v1/apps/nope/logs", "no app nope"},
		"error/bad lines":     {"GET", "/v1/apps/c1/logs?lines=-1", "lines must be"},
		"error/unknown route": {"GET", "/v1/nothing", "HTTP 404"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			err := Call(ctx, socket, c.method, c.path, nil)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	var res map[string]string
	if err := Call(ctx, socket, "POST", "/v1/update-check", &res); err != nil || res["result"] != "up to date" {
		t.Fatalf("update-check = %v, %v", res, err)
	}
}

// TestAdminRefusesNonRoot connects as nobody (uid 65534) with curl under
// setpriv: the kernel's peer credentials, not anything the caller says,
// decide.
func TestAdminRefusesNonRoot(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to act as another user; run the tests as root (CI does)")
	}
	for _, tool := range []string{"setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	socket, sup := serveAdmin(t)
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		"curl", "-sS", "-X", "POST", "--unix-socket", socket, "http://agent/v1/apps/c1/stop").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	if !strings.Contains(string(out), "only root may use") {
		t.Fatalf("nobody got: %s", out)
	}
	if st := sup.Status()[0]; st.State == supervisor.StateStopped {
		t.Fatal("a non-root caller stopped the app")
	}
}

func TestListenRefusesInUseAndNonSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.sock")
	l, err := Listen(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := Listen(path, 0o600); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Listen: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	if _, err := Listen(file, 0o600); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen on a file: %v", err)
	}
	l.Close()
	// A stale socket (no one listening) is replaced.
	stale := filepath.Join(dir, "stale.sock")
	l2, _ := Listen(stale, 0o600)
	l2.(interface{ SetUnlinkOnClose(bool) }).SetUnlinkOnClose(false)
	l2.Close()
	l3, err := Listen(stale, 0o600)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l3.Close()
}
