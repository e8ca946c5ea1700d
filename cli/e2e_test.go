//go:build !agentonly

package cli

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/opensphere/sphere"
	"github.com/opensphere/sphere/internal/syncbuf"
	"github.com/opensphere/sphere/store"
)

// service is a `sphere serve` running in process on 127.0.0.1:0.
type service struct {
	url, token, caFile string
	stop               func() error
}

var listenLine = regexp.MustCompile(`listening on (https://127\.0\.0\.1:\d+)`)
var tokenLine = regexp.MustCompile(`(?m)^  (sph_[A-Za-z0-9_-]+)$`)

func startService(t *testing.T, dataDir string, extra ...string) *service {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &syncbuf.Buffer{}, &syncbuf.Buffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--log-level", "warn"}, extra...)
	go func() { done <- Run(ctx, args, strings.NewReader(""), out, errOut) }()
	deadline := time.After(30 * time.Second)
	for !listenLine.MatchString(out.String()) {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited early: %v\nstdout:\n%s\nstderr:\n%s", err, out, errOut)
		case <-deadline:
			cancel()
			t.Fatalf("serve did not start within 30s\nstdout:\n%s\nstderr:\n%s", out, errOut)
		case <-time.After(10 * time.Millisecond):
		}
	}
	s := &service{url: listenLine.FindStringSubmatch(out.String())[1], caFile: filepath.Join(dataDir, "tls", "server.crt")}
	if m := tokenLine.FindStringSubmatch(out.String()); m != nil {
		s.token = m[1]
	}
	var once sync.Once
	var stopErr error
	s.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("serve did not stop within 30s")
			}
		})
		return stopErr
	}
	t.Cleanup(func() { s.stop() })
	return s
}

// cli runs sphere commands in process against one config file.
type cli struct {
	t      *testing.T
	config string
}

// run runs a command that must succeed and returns its stdout.
func (c cli) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("sphere %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a command and returns its stdout and stderr together with its error.
func (c cli) try(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), append([]string{"--config", c.config}, args...), strings.NewReader(""), &out, &errOut)
	if err != nil {
		return out.String() + errOut.String(), err
	}
	return out.String(), nil
}

// runJSON runs a command with --output json and decodes its stdout.
func (c cli) runJSON(v any, args ...string) {
	c.t.Helper()
	out := c.run(append([]string{"--output", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		c.t.Fatalf("sphere %s: output is not the expected JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeKeyPair(t *testing.T, dir, name string) (pubPath string, spki []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spki, err = x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPath = filepath.Join(dir, name+".pub")
	if err := os.WriteFile(pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}), 0o644); err != nil {
		t.Fatal(err)
	}
	return pubPath, spki
}

func mustContain(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: output lacks %q:\n%s", what, w, got)
		}
	}
}

// TestWalkthrough runs the README's walkthrough through the CLI in process
// against a real `sphere serve` on loopback, first on SQLite and then, when
// SPHERE_TEST_POSTGRES is set, on PostgreSQL, checking table and JSON output
// and that a restart keeps everything.
func TestWalkthrough(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { walkthrough(t, nil) })
	t.Run("postgres", func(t *testing.T) {
		dsn := os.Getenv("SPHERE_TEST_POSTGRES")
		if dsn == "" {
			t.Skip("SPHERE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); skipping the PostgreSQL run")
		}
		walkthrough(t, []string{"--db", freshSchema(t, dsn)})
	})
}

// freshSchema makes a schema of its own for one test and returns the DSN
// that uses it.
func freshSchema(t *testing.T, dsn string) string {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	schema := fmt.Sprintf("sphere_cli_%d", time.Now().UnixNano())
	if _, err := db.Exec(`CREATE SCHEMA "` + schema + `"`); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		db.Exec(`DROP SCHEMA "` + schema + `" CASCADE`)
		db.Close()
	})
	return store.PostgresSchemaDSN(dsn, schema)
}

func walkthrough(t *testing.T, serveArgs []string) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "sphere-data")
	svc := startService(t, dataDir, serveArgs...)
	if svc.token == "" {
		t.Fatal("first start printed no bootstrap token")
	}
	admin := cli{t: t, config: filepath.Join(dir, "admin.json")}

	// Log in: the config file holds the token and must be private.
	out := admin.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", svc.token)
	mustContain(t, "login", out, "as admin (operator)", `Administrator in tenant "Default" (selected)`)
	if fi, err := os.Stat(admin.config); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config file mode: %v %v; want 0600", fi.Mode(), err)
	}
	if _, err := admin.try("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", "sph_wrong"); err == nil {
		t.Error("login with a wrong token succeeded")
	}
	if _, err := (cli{t: t, config: filepath.Join(dir, "x.json")}).try("login", "--server", svc.url, "--token", svc.token); err == nil ||
		!strings.Contains(err.Error(), "not trusted") {
		t.Errorf("login without --ca-file against the self-signed certificate: err = %v; want a 'not trusted' hint", err)
	}
	mustContain(t, "tenant list", admin.run("tenant", "list"), "NAME", "Default")

	// Products come with the five default device groups.
	mustContain(t, "product create", admin.run("product", "create", "--name", "Coffee Maker", "--description", "Model CM-1"), "Coffee Maker", "Model CM-1")
	var groups []sphere.DeviceGroup
	admin.runJSON(&groups, "device-group", "list", "--product", "Coffee Maker")
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	if got, want := strings.Join(names, ","), "Development,Field Test,Field Test OS Evaluation,Production,Production OS Evaluation"; got != want {
		t.Errorf("default groups = %s; want %s", got, want)
	}
	mustContain(t, "device-group list table", admin.run("device-group", "list", "--product", "Coffee Maker"),
		"PRODUCT", "UPDATE POLICY", "Coffee Maker  Production OS Evaluation")
	var g sphere.DeviceGroup
	admin.runJSON(&g, "device-group", "update", "--device-group", "Coffee Maker/Field Test", "--update-policy", "NoUpdates")
	if g.UpdatePolicy != sphere.PolicyNoUpdates {
		t.Errorf("update policy = %s; want NoUpdates", g.UpdatePolicy)
	}
	if out, err := admin.try("product", "create", "--name", "Bad/Name"); err == nil || !strings.Contains(out, "letters, digits and spaces") {
		t.Errorf("invalid product name: err=%v out=%s", err, out)
	}

	// Register a device, claim it, move it.
	idPub, spki := writeKeyPair(t, dir, "id")
	akPub, _ := writeKeyPair(t, dir, "ak")
	sum := sha256.Sum256(spki)
	devID := hex.EncodeToString(sum[:])
	var d sphere.Device
	admin.runJSON(&d, "device", "register", "--identity-key", idPub, "--attestation-key", akPub)
	if d.ID != devID {
		t.Fatalf("registered device id %s; want SHA-256 of the identity key %s", d.ID, devID)
	}
	admin.run("device", "claim", "--device", devID, "--device-group", "Coffee Maker/Development")
	admin.run("device", "update", "--device", devID, "--device-group", "Coffee Maker/Field Test")
	mustContain(t, "device list", admin.run("device", "list"), devID, "Coffee Maker/Field Test")
	var ds []sphere.Device
	admin.runJSON(&ds, "device", "list", "--device-group", "Coffee Maker/Field Test")
	if len(ds) != 1 || ds[0].ID != devID || ds[0].ProductID == "" {
		t.Errorf("device list --device-group = %+v; want the one device", ds)
	}

	// A Reader can read but not change.
	var added struct {
		Secret string `json:"secret"`
	}
	admin.runJSON(&added, "role", "add", "--user", "alice@example.com", "--role", "Reader")
	if !strings.HasPrefix(added.Secret, "sph_") {
		t.Fatalf("role add for a new user printed no token: %+v", added)
	}
	mustContain(t, "role list", admin.run("role", "list"), "alice@example.com", "Reader", "Administrator")
	alice := cli{t: t, config: filepath.Join(dir, "alice.json")}
	mustContain(t, "alice login", alice.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", added.Secret), "as alice@example.com (user)")
	mustContain(t, "alice device list", alice.run("device", "list"), devID)
	if out, err := alice.try("product", "create", "--name", "Espresso"); err == nil || !strings.Contains(out, "HTTP 403") {
		t.Errorf("Reader created a product: err=%v out=%s", err, out)
	}
	if out, err := alice.try("device", "release", "--device", devID, "--confirm"); err == nil || !strings.Contains(out, "HTTP 403") {
		t.Errorf("Reader released a device: err=%v out=%s", err, out)
	}

	// Another tenant sees none of it.
	admin.run("tenant", "create", "--name", "Other Corp")
	if out, err := admin.try("device", "show", "--device", devID, "--tenant", "Other Corp"); err == nil || !strings.Contains(out, "HTTP 404") {
		t.Errorf("device visible from another tenant: err=%v out=%s", err, out)
	}
	if out, err := alice.try("product", "list", "--tenant", "Other Corp"); err == nil || !strings.Contains(out, "HTTP 404") {
		t.Errorf("alice reached a tenant she holds no role in: err=%v out=%s", err, out)
	}

	// Release needs --confirm and is audited.
	if _, err := admin.try("device", "release", "--device", devID); err == nil {
		t.Error("release without --confirm succeeded")
	}
	mustContain(t, "release", admin.run("device", "release", "--device", devID, "--confirm"), "Released device "+devID)
	mustContain(t, "audit list", admin.run("audit", "list"), "ACTION", "device.release", "device.claim", "product.create", "role.add")
	var entries []sphere.AuditEntry
	admin.runJSON(&entries, "audit", "list", "--action", "device.release", "--result", "ok")
	if len(entries) != 1 || entries[0].Actor != "admin" || entries[0].Target != devID || entries[0].Result != "ok" {
		t.Errorf("audit for device.release = %+v", entries)
	}
	var failed []sphere.AuditEntry
	admin.runJSON(&failed, "audit", "list", "--actor", "alice@example.com", "--result", "error")
	if len(failed) != 2 {
		t.Errorf("alice's refused calls in the audit log = %d entries; want 2: %+v", len(failed), failed)
	}

	// A restart keeps every row, prints no new bootstrap token, and the
	// saved login still works.
	if err := svc.stop(); err != nil {
		t.Fatalf("graceful stop: %v", err)
	}
	svc2 := startService(t, dataDir, serveArgs...)
	if svc2.token != "" {
		t.Error("a restart printed a new bootstrap token")
	}
	admin.run("login", "--server", svc2.url, "--ca-file", svc2.caFile, "--token", svc.token)
	var prods []sphere.Product
	admin.runJSON(&prods, "product", "list")
	if len(prods) != 1 || prods[0].Name != "Coffee Maker" {
		t.Errorf("products after restart = %+v", prods)
	}
	admin.runJSON(&entries, "audit", "list")
	if len(entries) < 8 {
		t.Errorf("audit entries after restart = %d; want all of them", len(entries))
	}
	mustContain(t, "version", admin.run("version"), "sphere ")
}

// TestRecoverToken shows the documented way back in when every operator
// token is lost.
func TestRecoverToken(t *testing.T) {
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "sphere-data")
	svc := startService(t, dataDir)
	c := cli{t: t, config: filepath.Join(dir, "c.json")}
	out := c.run("admin", "recover-token", "--data-dir", dataDir)
	m := tokenLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("recover-token printed no token:\n%s", out)
	}
	mustContain(t, "login with recovered token", c.run("login", "--server", svc.url, "--ca-file", svc.caFile, "--token", m[1]), "as admin (operator)")
}
