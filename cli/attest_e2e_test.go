//go:build !agentonly

package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/rot"
)

// TestAttestationWalkthrough drives a device's enrolment and attestation
// through the CLI in process against `sphere serve` on loopback: agent
// identity -> device register --file -> claim -> allow what it measures ->
// agent attest -> a certificate that openssl verifies against the tenant
// chain from `ca-certificate download-chain`; then a proof of possession,
// and a revocation that the next attestation and `device show` report.
func TestAttestationWalkthrough(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "sphere-data")
	svc := startService(t, dataDir)
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}
	admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	admin.run("product", "create", "--name", "Thermostat")

	// At manufacture: the device prints its record, the operator registers it.
	stateDir := filepath.Join(dir, "device")
	record := admin.run("agent", "identity", "--rot", "soft", "--state-dir", stateDir)
	recFile := filepath.Join(dir, "record.json")
	os.WriteFile(recFile, []byte(record), 0o644)
	var d sphere.Device
	admin.runJSON(&d, "device", "register", "--file", recFile)
	if d.RoT != "soft" || !strings.Contains(record, d.ID) {
		t.Fatalf("registered %+v from record %s", d, record)
	}
	admin.run("device", "claim", "--device", d.ID, "--device-group", "Thermostat/Development")

	// The tenant allows what the device measures.
	agentFlags := []string{"--server", svc.url, "--ca-file", svc.caFile, "--rot", "soft", "--state-dir", stateDir, "--log-level", "error"}
	var events []rot.Event
	admin.runJSON(&events, append([]string{"agent", "measurements"}, agentFlags...)...)
	if len(events) != 2 {
		t.Fatalf("measurements = %+v", events)
	}
	refused, err := admin.try(append([]string{"agent", "attest"}, agentFlags...)...)
	if err == nil || !strings.Contains(refused, "unknown_software") {
		t.Errorf("attest before allowing the software: %v\n%s", err, refused)
	}
	for _, e := range events {
		admin.run("measurement", "allow", "--type", e.Type, "--digest", e.Digest, "--name", e.Name)
	}

	// Attest: healthy, and the certificate verifies against the chain.
	out := admin.run(append([]string{"agent", "attest"}, agentFlags...)...)
	mustContain(t, "agent attest", out, "Result:", "healthy", "device.crt")
	mustContain(t, "device show", admin.run("device", "show", "--device", d.ID), "Last attestation:", "healthy", "Certificate expires:")
	mustContain(t, "ca-certificate list", admin.run("ca-certificate", "list"), "Active")
	chain := filepath.Join(dir, "chain.pem")
	admin.run("ca-certificate", "download-chain", "--destination", chain)
	ca := filepath.Join(dir, "ca.pem")
	admin.run("ca-certificate", "download", "--destination", ca)
	leaf := filepath.Join(stateDir, "device.crt") // leaf first, then the chain
	openssl(t, "verify", "-purpose", "sslclient", "-CAfile", chain, leaf)
	mustContain(t, "certificate subject", openssl(t, "x509", "-in", leaf, "-noout", "-subject"), d.ID)

	// Proof of possession for registering the CA with a cloud.
	proof := filepath.Join(dir, "proof.pem")
	admin.run("ca-certificate", "download-proof", "--code", "8F2A1C0D9E", "--destination", proof)
	mustContain(t, "proof subject", openssl(t, "x509", "-in", proof, "-noout", "-subject"), "CN = 8F2A1C0D9E")
	openssl(t, "verify", "-partial_chain", "-CAfile", ca, proof)

	// Revoked: refused, with the reason for operators.
	admin.run("device", "revoke", d.ID, "--reason", "reported stolen")
	refused, err = admin.try(append([]string{"agent", "attest"}, agentFlags...)...)
	if err == nil || !strings.Contains(refused, "device_revoked") {
		t.Errorf("attest when revoked: %v\n%s", err, refused)
	}
	mustContain(t, "device show when revoked", admin.run("device", "show", "--device", d.ID), "refused (device_revoked)", "reported stolen")
	admin.run("device", "unrevoke", "--device", d.ID)
	admin.run(append([]string{"agent", "attest"}, agentFlags...)...)

	// The agent running: `sphere agent status` asks it over its admin socket.
	if os.Getuid() != 0 {
		t.Log("not root: skipping the admin-socket part (the socket answers root only)")
		return
	}
	socket := filepath.Join(dir, "admin.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		var out bytes.Buffer
		done <- Run(ctx, append([]string{"agent", "--admin-socket", socket}, agentFlags...), strings.NewReader(""), &out, &out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sphere agent: %v", err)
		}
	}()
	var status string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if status, err = admin.try("agent", "status", "--admin-socket", socket); err == nil && strings.Contains(status, "healthy") {
			break
		}
	}
	mustContain(t, "agent status", status, "Device:", d.ID, "Root of trust:", "soft", "valid until", "Last attestation:", "healthy", "Protections:", "Apps:", "Updates:", "Last update:")
	mustContain(t, "agent app list", admin.run("agent", "app", "list", "--admin-socket", socket), "COMPONENT", "STATE")
	// The update engine runs in the agent: update-check reports what runs
	// (nothing is deployed here).
	mustContain(t, "agent update-check", admin.run("agent", "update-check", "--admin-socket", socket), `"components": []`)
}

func openssl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("openssl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
