//go:build !agentonly

package cli

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/agent"
	"github.com/opensphere/sphere/rot"
	"github.com/opensphere/sphere/updates"
)

// TestUpdateWalkthrough drives images and deployments through the CLI in
// process against `sphere serve`: keygen, pack-app, signing-key add, image
// add, deployment create; a device checks over mutual TLS and reports a
// rollback; the rollout halts by itself, and `deployment show` and
// `device show` say why.
func TestUpdateWalkthrough(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "sphere-data")
	svc := startService(t, dataDir)
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}
	admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	admin.run("product", "create", "--name", "Oven")

	// A device, enrolled and attested, in Field Test.
	d, stateDir, _ := admin.enrollDevice(svc, dir, "Oven/Field Test")
	mustContain(t, "device show before any deployment", admin.run("device", "show", d.ID),
		"Last update check:", "never", `device group "Field Test" has no deployment`)

	// Sign and upload an app.
	key, pub := filepath.Join(dir, "signer.pem"), filepath.Join(dir, "signer.pub")
	admin.run("image-package", "keygen", "--out", key, "--public-out", pub)
	app := filepath.Join(dir, "app")
	os.MkdirAll(filepath.Join(app, "bin"), 0o755)
	os.WriteFile(filepath.Join(app, "bin", "oven"), []byte("#!/bin/sh\necho baking\n"), 0o755)
	os.WriteFile(filepath.Join(app, "app_manifest.json"), []byte(`{"SchemaVersion": 1, "Name": "oven", "ComponentId": "4f0c2a1e-9b7d-4e3a-8c6b-2d1f0e9a8b7c",
		"EntryPoint": "/bin/oven", "CmdArgs": [], "Capabilities": {"AllowedConnections": ["api.example.com"]}}`), 0o644)
	pkg := filepath.Join(dir, "oven.pkg")
	admin.run("image-package", "pack-app", "--dir", app, "--key", key, "--out", pkg, "--version", "1.0.0", "--security-version", "1")
	if out, err := admin.try("image", "add", "--file", pkg); err == nil || !strings.Contains(out, "not a registered publisher key") {
		t.Fatalf("upload before registering the key: %v\n%s", err, out)
	}
	admin.run("image", "signing-key", "add", "--name", "CI", "--file", pub)
	var im sphere.Image
	admin.runJSON(&im, "image", "add", "--file", pkg)
	mustContain(t, "image list", admin.run("image", "list"), im.ID, "oven", "1.0.0")

	// Deploy to the whole group at once, halting on the first failure.
	var dep sphere.Deployment
	admin.runJSON(&dep, "deployment", "create", "--device-group", "Oven/Field Test", "--image", im.ID,
		"--waves", "100", "--min-sample", "1", "--failure-threshold", "10")

	// The device checks over mutual TLS, is offered the app, fails to
	// install it and says so at its next check.
	roots := x509.NewCertPool()
	pemData, _ := os.ReadFile(svc.caFile)
	roots.AppendCertsFromPEM(pemData)
	r, err := rot.OpenSoft(stateDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ag, err := agent.New(agent.Config{Server: svc.url, StateDir: stateDir, RoT: r, ServerRoots: roots})
	if err != nil || ag.Certificate() == nil {
		t.Fatalf("agent with its stored certificate: %v", err)
	}
	var check updates.CheckResult
	if err := ag.Post(context.Background(), "/device/v1/updates/check", updates.Report{}, &check); err != nil {
		t.Fatal(err)
	}
	if len(check.Targets) != 1 || check.Targets[0].ImageID != im.ID {
		t.Fatalf("check = %+v", check)
	}
	if err := ag.Post(context.Background(), "/device/v1/updates/check", updates.Report{LastUpdate: sphere.UpdateRolledBack,
		LastError: "health check failed: oven exited 3 times", DeploymentID: dep.ID}, &check); err != nil {
		t.Fatal(err)
	}
	mustContain(t, "deployment show", admin.run("deployment", "show", "--deployment", dep.ID),
		"State:", "halted", "Why:", "halted by itself in wave 1", "rolled_back 1")
	mustContain(t, "deployment show --devices", admin.run("deployment", "show", "--deployment", dep.ID, "--devices"),
		d.ID, "rolled_back", "oven exited 3 times")
	mustContain(t, "device show after the failure", admin.run("device", "show", d.ID),
		"is halted: halted by itself", "last update failed: health check failed")

	// Resume by hand; pause; check-now.
	mustContain(t, "resume", admin.run("deployment", "resume", "--deployment", dep.ID, "--reason", "fixed"), "active")
	mustContain(t, "pause", admin.run("deployment", "pause", "--deployment", dep.ID, "--reason", "waiting for QA"), "paused by admin: waiting for QA")
	admin.run("device", "check-now", d.ID)
	var ex struct {
		Updates updates.Explanation `json:"updates"`
	}
	admin.runJSON(&ex, "device", "show", d.ID)
	if !ex.Updates.CheckNow {
		t.Error("check-now was not recorded")
	}
	mustContain(t, "audit", admin.run("audit", "list", "--action", "deployment.pause"), "deployment.pause", "ok")
	mustContain(t, "tuf root", admin.run("tuf", "root"), `"_type":"root"`, `"consistent_snapshot":true`, `"version":1}`)

	// Take the TUF root key offline; a key rotation then waits for it, and
	// signing the pending root offline publishes root version 2.
	rootKey := filepath.Join(dir, "tuf-root.pem")
	admin.run("tuf", "root-key", "export", "--destination", rootKey)
	if fi, err := os.Stat(rootKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("exported root key: %v %v", fi, err)
	}
	if _, err := admin.try("tuf", "root-key", "remove"); err == nil {
		t.Error("removing the root key without --confirm succeeded")
	}
	admin.run("tuf", "root-key", "remove", "--confirm")
	if out, err := admin.try("tuf", "rotate", "--role", "timestamp"); err == nil || !strings.Contains(out, "offline") {
		t.Errorf("rotation with the root key offline: %v\n%s", err, out)
	}
	admin.run("tuf", "sign-root", "--key", rootKey)
	mustContain(t, "tuf root after signing offline", admin.run("tuf", "root"), `"version":2}`)
	mustContain(t, "audit", admin.run("audit", "list", "--action", "tuf.root_key_export"), "ok")
}
