package agent

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/localapi"
	"github.com/opensphere/sphere/supervisor"
)

// TestAppUplinkMosquitto: an app holding DeviceAuthentication publishes
// and subscribes through the agent's MQTT session on a real Mosquitto that
// trusts the tenant chain; the broker sees the device id, the app never
// holds a key. Apps without the capability, naming another tenant, or not
// installed are refused. Callers are told apart by the uid the kernel
// reports, so the test calls as other users through setpriv and curl.
func TestAppUplinkMosquitto(t *testing.T) {
	bin := mosquittoBinary(t)
	if os.Getuid() != 0 {
		t.Skip("apps are told apart by uid: run as root to call as other users (CI does)")
	}
	for _, tool := range []string{"setpriv", "curl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	svc := startService(t)
	ctx := context.Background()
	bundle, err := svc.ca.Bundle(ctx, svc.tenant.ID())
	if err != nil {
		t.Fatal(err)
	}
	br := startMosquitto(t, bin, bundle)
	dev := svc.attestedDevice(t)
	observer := svc.attestedDevice(t)
	devC, obsC := br.client(t, dev, 0, ""), br.client(t, observer, 0, "")
	awaitConnection(t, devC)
	awaitConnection(t, obsC)
	in := newInbox()
	if err := obsC.Subscribe(ctx, "devices/#", in.handle); err != nil {
		t.Fatal(err)
	}

	app := func(id, tenant string) supervisor.App {
		return supervisor.App{ComponentID: id, ImageID: "img-" + id, Manifest: image.AppManifest{SchemaVersion: 1, Name: id, ComponentId: id,
			EntryPoint: "/bin/app", Capabilities: image.Capabilities{DeviceAuthentication: tenant}}}
	}
	apps := map[int]supervisor.App{
		20001: app("with-capability", dev.agent.TenantID()),
		20002: app("without-capability", ""),
		20003: app("other-tenant", "6f1a1c9e-0000-4000-8000-000000000001"),
	}
	api := &localapi.AppAPI{Tenant: dev.agent.TenantID, Uplink: devC,
		AppByUID: func(uid int) (supervisor.App, bool) { a, ok := apps[uid]; return a, ok }}
	socket := serveWorldSocket(t, api.Handler())

	publishAs := func(t *testing.T, uid int, topic, payload string) string {
		body := fmt.Sprintf(`{"topic":%q,"payload":%q,"qos":1}`, topic, base64.StdEncoding.EncodeToString([]byte(payload)))
		return asUser(t, uid, "curl", "-sS", "-w", " HTTP %{http_code}", "--unix-socket", socket,
			"-H", "Content-Type: application/json", "-d", body, "http://agent/v1/uplink/publish")
	}

	t.Run("publish", func(t *testing.T) {
		if out := publishAs(t, 20001, dev.topic(), "from the app"); !strings.Contains(out, "HTTP 204") {
			t.Fatalf("publish: %s", out)
		}
		in.waitFor(t, dev.topic(), "from the app")
	})

	t.Run("subscribe", func(t *testing.T) {
		filter := "devices/" + dev.agent.DeviceID() + "/echo"
		sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(sctx, "setpriv", "--reuid=20001", "--regid=20001", "--clear-groups",
			"curl", "-sSN", "--unix-socket", socket, "http://agent/v1/uplink/messages?filter="+filter)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cancel()
		lines := make(chan string, 4)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// The stream is open once the agent has subscribed; publish until
		// the app sees its message come back through the broker.
		for i := 0; ; i++ {
			publish(t, obsC, observer.topic(), "tick") // keeps the broker busy; not what the app reads
			if out := publishAs(t, 20001, filter, "echo"); !strings.Contains(out, "HTTP 204") {
				t.Fatalf("publish: %s", out)
			}
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("the message stream ended")
				}
				want := fmt.Sprintf(`{"topic":%q,"payload":%q}`, filter, base64.StdEncoding.EncodeToString([]byte("echo")))
				if l != want {
					t.Fatalf("app received %s, want %s", l, want)
				}
				return
			case <-time.After(500 * time.Millisecond):
			}
			if i == 20 {
				t.Fatal("the app received nothing on its subscription")
			}
		}
	})

	refusals := map[string]struct {
		uid  int
		want string
	}{
		"error/no capability":   {20002, "does not hold the DeviceAuthentication capability"},
		"error/another tenant":  {20003, "names tenant 6f1a1c9e-0000-4000-8000-000000000001, but the device belongs to tenant"},
		"error/not an app":      {20004, "uid 20004 is not an installed app"},
		"error/root is no app ": {0, "uid 0 is not an installed app"},
	}
	for name, c := range refusals {
		t.Run(name, func(t *testing.T) {
			out := publishAs(t, c.uid, dev.topic(), "refused "+name)
			if !strings.Contains(out, "HTTP 403") || !strings.Contains(out, c.want) {
				t.Fatalf("got %s, want 403 with %q", out, c.want)
			}
		})
	}
	flush(t, devC)
	publish(t, devC, dev.topic(), "last")
	in.waitFor(t, dev.topic(), "last")
	for name := range refusals {
		if in.has(dev.topic(), "refused "+name) {
			t.Errorf("a refused app's message (%s) reached the broker", name)
		}
	}
	if out := asUser(t, 20001, "curl", "-sS", "-w", " HTTP %{http_code}", "--unix-socket", socket, "-d", `{"topic":"a","qos":2}`,
		"http://agent/v1/uplink/publish"); !strings.Contains(out, "HTTP 400") || !strings.Contains(out, "qos must be 0 or 1") {
		t.Errorf("QoS 2: %s", out)
	}
}

// serveWorldSocket serves h on a socket any user may connect to, in a
// directory any user may enter (t.TempDir's parent is 0700).
func serveWorldSocket(t *testing.T, h http.Handler) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sphere-apps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	socket := filepath.Join(dir, "app.sock")
	l, err := localapi.Listen(socket, 0o666)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- localapi.Serve(ctx, l, h) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return socket
}

// asUser runs a command as uid (and gid) with no supplementary groups.
func asUser(t *testing.T, uid int, name string, args ...string) string {
	t.Helper()
	id := fmt.Sprint(uid)
	out, err := exec.Command("setpriv", append([]string{"--reuid=" + id, "--regid=" + id, "--clear-groups", name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s as uid %d: %v: %s", name, uid, err, out)
	}
	return string(out)
}
