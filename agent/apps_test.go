package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/sandbox"
	"github.com/opensphere/sphere/supervisor"
)

// TestCompartmentsAppSocket runs a real app in its sandbox compartment
// under the supervisor, where the engine installs apps (under the state
// dir), and has it call the apps' socket: the agent knows it by the uid
// its compartment gave it, and the uid stays the same across restarts.
func TestCompartmentsAppSocket(t *testing.T) {
	if runtime.GOOS != "linux" || os.Getuid() != 0 {
		t.Skip("compartments need Linux and root (CI runs this)")
	}
	// Not t.TempDir: its parent is 0700, which no app uid can pass.
	stateDir, err := os.MkdirTemp("", "sphere-agent-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(stateDir) })
	os.Chmod(stateDir, 0o700)
	const comp = "0e5d3f7a-1b2c-4d5e-8f90-a1b2c3d4e5f6"
	appDir := filepath.Join(stateDir, "update", "apps", comp, "img1")
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Join(stateDir, "update"), 0o700)
	build := exec.Command("go", "build", "-o", filepath.Join(appDir, "app"), "./testdata/sockapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	socket := filepath.Join(stateDir, "app.sock")
	// Relative paths, as `sphere agent --state-dir device` gives: the
	// compartment gets them made absolute.
	cwd, _ := os.Getwd()
	relState, _ := filepath.Rel(cwd, stateDir)
	relApp, _ := filepath.Rel(cwd, appDir)
	comps, err := NewCompartments(sandbox.New(sandbox.Config{}), sandbox.IDRange{}, relState, []string{"SPHERE_APP_SOCKET=" + socket})
	if err != nil {
		t.Fatal(err)
	}
	sup := supervisor.New(supervisor.Config{Launcher: comps})
	t.Cleanup(sup.Close)
	comps.Attach(sup)
	api := &localapi.AppAPI{AppByUID: comps.AppByUID, Tenant: func() string { return "7c1e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5" }}
	l, err := localapi.Listen(socket, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- localapi.Serve(ctx, l, api.Handler()) }()
	t.Cleanup(func() { cancel(); <-served })

	sup.Set([]supervisor.App{{ComponentID: comp, ImageID: "img1", Version: "1.0.0", Dir: relApp,
		Manifest: image.AppManifest{SchemaVersion: 1, Name: "sockapp", ComponentId: comp, EntryPoint: "/app",
			Capabilities: image.Capabilities{DeviceAuthentication: "7c1e2d3f-4a5b-4c6d-8e7f-8091a2b3c4d5"}}}})
	var logs []string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if logs, _ = sup.Logs(comp, 0); len(logs) >= 2 {
			break
		}
	}
	uid, err := comps.uid(comp)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Join(logs, "\n")
	// 503, not 403: the agent knew the app by its uid, found it holds
	// DeviceAuthentication for the device's tenant, and only then noticed
	// there is no uplink configured.
	for _, want := range []string{fmt.Sprintf("uid=%d", uid), "status=503", "no cloud uplink configured"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the app printed:\n%s\nwant %q (status %+v)", out, want, sup.Status())
		}
	}
	if uid < 20000 {
		t.Fatalf("uid %d is not from the app range", uid)
	}
	again, err := NewCompartments(sandbox.New(sandbox.Config{}), sandbox.IDRange{}, stateDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := again.uid(comp); got != uid {
		t.Fatalf("after a restart the app got uid %d, before %d", got, uid)
	}
	if _, ok := comps.AppByUID(0); ok {
		t.Fatal("root is an app")
	}
}
