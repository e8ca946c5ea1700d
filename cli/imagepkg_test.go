//go:build !agentonly

package cli

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/opensphere/sphere/image"
)

// pkgcli runs sphere image-package commands in process. They touch only
// files, so no service or config is needed.
type pkgcli struct{ t *testing.T }

func (c pkgcli) run(args ...string) string {
	c.t.Helper()
	out, err := c.try(args...)
	if err != nil {
		c.t.Fatalf("sphere %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try returns stdout and stderr together with the command's error.
func (c pkgcli) try(args ...string) (string, error) {
	var out, errOut bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(""), &out, &errOut)
	return out.String() + errOut.String(), err
}

func (c pkgcli) fails(want string, args ...string) {
	c.t.Helper()
	out, err := c.try(args...)
	if err == nil {
		c.t.Fatalf("sphere %s succeeded, want an error saying %q\n%s", strings.Join(args, " "), want, out)
	}
	if !strings.Contains(out, want) {
		c.t.Fatalf("sphere %s: got\n%s\nwant it to say %q", strings.Join(args, " "), out, want)
	}
}

func (c pkgcli) showJSON(args ...string) imagePackageInfo {
	c.t.Helper()
	var info imagePackageInfo
	out := c.run(append([]string{"--output", "json", "image-package", "show"}, args...)...)
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		c.t.Fatalf("show: not JSON: %v\n%s", err, out)
	}
	return info
}

const pkgTestComponent = "3f0c2b5e-7d4a-4c1e-9b8f-2a6d5e4c3b21"

// writeAppDir makes an app directory with a manifest, an executable, a
// config file and an in-directory symlink.
func writeAppDir(t *testing.T, capabilities string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "app")
	files := map[string]string{
		"app_manifest.json": `{"SchemaVersion":1,"Name":"Blink","ComponentId":"` + pkgTestComponent + `","EntryPoint":"/bin/app","CmdArgs":["-v"],"Capabilities":` + capabilities + `}`,
		"bin/app":           "#!/bin/sh\necho blink\n",
		"etc/blink.conf":    "interval=5\n",
		"share/a/b/c.txt":   "deep\n",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "bin/app"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/blink.conf", filepath.Join(dir, "bin/conf")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// payloadOf returns the payload of the package file at path, after checking
// that it reads and verifies.
func payloadOf(t *testing.T, path string) (*image.Header, []byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := image.ReadHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := image.VerifyPayload(bytes.NewReader(payload), h); err != nil {
		t.Fatal(err)
	}
	return h, payload
}

func TestImagePkgAppWorkflow(t *testing.T) {
	c := pkgcli{t}
	tmp := t.TempDir()
	vendorKey, customerKey := filepath.Join(tmp, "vendor.pem"), filepath.Join(tmp, "customer.pem")
	vendorPub := filepath.Join(tmp, "vendor.pub.pem")

	out := c.run("image-package", "keygen", "--out", vendorKey, "--public-out", vendorPub)
	if !strings.Contains(out, "Key ID: ") || !strings.Contains(out, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("keygen output:\n%s", out)
	}
	fi, err := os.Stat(vendorKey)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v; want mode 0600", err, fi.Mode().Perm())
	}
	var kinfo signingKeyInfo
	if err := json.Unmarshal([]byte(c.run("-o", "json", "image-package", "keygen", "--out", customerKey)), &kinfo); err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := os.ReadFile(customerKey)
	if !bytes.HasPrefix(keyPEM, []byte("-----BEGIN PRIVATE KEY-----")) {
		t.Fatalf("key is not PKCS#8 PEM:\n%s", keyPEM)
	}
	customer, err := image.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if kid, _ := image.KeyID(&customer.PublicKey); kid != kinfo.KeyID {
		t.Fatalf("keygen printed key id %s, the key's is %s", kinfo.KeyID, kid)
	}
	c.fails("exists; pass --force", "image-package", "keygen", "--out", customerKey)

	dir := writeAppDir(t, `{"AllowedConnections":["mqtt.example.com:8883"],"Gpio":[8,9],"MutableStorage":{"SizeKB":64}}`)
	pkg := filepath.Join(tmp, "blink.pkg")
	out = c.run("image-package", "pack-app", "--dir", dir, "--key", vendorKey, "--out", pkg,
		"--version", "1.2.0", "--security-version", "3", "--build-time", "2026-08-01T12:00:00Z")
	for _, want := range []string{"Image ID:", "Kind:", "app", "Blink", pkgTestComponent, "1.2.0",
		"2026-08-01 12:00:00Z", "Entry point:", "/bin/app -v", "Capability Gpio:", "8, 9", "Capability MutableStorage:", "64 KiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("pack-app output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^Security version:\s+3$`).MatchString(out) {
		t.Errorf("pack-app output lacks the security version:\n%s", out)
	}

	// The package reads, verifies with the vendor key, and holds a
	// reproducible tar of the directory.
	h, payload := payloadOf(t, pkg)
	vendor, _ := image.ParsePublicKeyPEM(mustRead(t, vendorPub))
	if err := h.VerifySignature(vendor); err != nil {
		t.Fatal(err)
	}
	if h.Metadata.Kind != image.KindApp || h.Metadata.SecurityVersion != 3 || h.Metadata.AppManifest.EntryPoint != "/bin/app" {
		t.Errorf("metadata = %+v", h.Metadata)
	}
	checkAppTar(t, payload)

	info := c.showJSON(pkg, "--verify-key", vendorPub)
	if info.ImageID != h.ImageID() || !info.PayloadVerified || info.SignatureCheck == nil || !info.SignatureCheck.Valid ||
		info.Metadata.Name != "Blink" || info.Metadata.AppManifest == nil || info.SignerKeyID != h.Signature.KeyID {
		t.Errorf("show --output json = %+v", info)
	}
	out = c.run("image-package", "show", pkg)
	for _, want := range []string{h.ImageID(), "verified: matches its size, SHA-256 and chunk index", h.Signature.KeyID, "not checked (pass --verify-key)"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}

	// Packing the same files again, with other modification times, gives
	// the same image: the tar is reproducible.
	later := time.Now().Add(time.Hour)
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { os.Chtimes(p, later, later); return nil })
	pkg2 := filepath.Join(tmp, "again.pkg")
	c.run("image-package", "pack-app", "--dir", dir, "--key", vendorKey, "--out", pkg2,
		"--version", "1.2.0", "--security-version", "3", "--build-time", "2026-08-01T12:00:00Z")
	if h2, _ := payloadOf(t, pkg2); h2.ImageID() != h.ImageID() {
		t.Errorf("packing the same directory twice gave image ids %s and %s", h.ImageID(), h2.ImageID())
	}

	// The customer re-signs with its own key, in place: the image id stays,
	// and only the customer's key verifies it.
	c.run("image-package", "sign", "--key", customerKey, "--in", pkg, "--out", pkg)
	info = c.showJSON(pkg, "--verify-key", customerKey)
	if info.ImageID != h.ImageID() || info.SignerKeyID != kinfo.KeyID || !info.SignatureCheck.Valid {
		t.Errorf("after sign: %+v", info)
	}
	if _, p2 := payloadOf(t, pkg); !bytes.Equal(p2, payload) {
		t.Error("sign changed the payload")
	}
	c.fails("signed by an unknown key", "image-package", "show", pkg, "--verify-key", vendorPub)

	// A damaged package is reported, naming what is wrong.
	data := mustRead(t, pkg)
	data[len(data)-100] ^= 0xff
	bad := filepath.Join(tmp, "bad.pkg")
	os.WriteFile(bad, data, 0o644)
	c.fails("payload does not match its SHA-256 in the metadata: the file is corrupt or was altered", "image-package", "show", bad)
	c.fails("payload does not match its SHA-256", "image-package", "sign", "--key", customerKey, "--in", bad, "--out", filepath.Join(tmp, "never.pkg"))
	if _, err := os.Stat(filepath.Join(tmp, "never.pkg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("sign of a corrupt package left an output file: %v", err)
	}
	c.fails("truncated in the payload", "image-package", "show", writeFile(t, tmp, "short.pkg", data[:len(data)-1000]))
	c.fails("not an OpenSphere image package", "image-package", "show", filepath.Join(dir, "app_manifest.json"))
}

func checkAppTar(t *testing.T, payload []byte) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(payload))
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		if !hdr.ModTime.Equal(time.Unix(0, 0)) || hdr.Uid != 0 || hdr.Gid != 0 || hdr.Uname != "" || hdr.Gname != "" {
			t.Errorf("%s: mtime %v, owner %d:%d %q:%q; want all zero", hdr.Name, hdr.ModTime, hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname)
		}
		switch hdr.Name {
		case "bin/app":
			if hdr.Mode != 0o755 {
				t.Errorf("bin/app mode %o, want 755", hdr.Mode)
			}
		case "bin/conf":
			if hdr.Typeflag != tar.TypeSymlink || hdr.Linkname != "../etc/blink.conf" {
				t.Errorf("bin/conf: type %c -> %q, want a symlink to ../etc/blink.conf", hdr.Typeflag, hdr.Linkname)
			}
		case "etc/blink.conf":
			if b, _ := io.ReadAll(tr); string(b) != "interval=5\n" || hdr.Mode != 0o644 {
				t.Errorf("etc/blink.conf: %q mode %o", b, hdr.Mode)
			}
		}
	}
	want := "app_manifest.json bin/ bin/app bin/conf etc/ etc/blink.conf share/ share/a/ share/a/b/ share/a/b/c.txt"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("tar entries:\n%s\nwant\n%s", got, want)
	}
}

func TestImagePkgOS(t *testing.T) {
	c := pkgcli{t}
	tmp := t.TempDir()
	key := filepath.Join(tmp, "k.pem")
	c.run("image-package", "keygen", "--out", key)
	rootfs := writeFile(t, tmp, "rootfs.img", bytes.Repeat([]byte("rootfs block "), 100_000))
	pkg := filepath.Join(tmp, "os.pkg")
	const osID = "9d1e8f2a-4b3c-4d5e-8f6a-7b8c9d0e1f2a"
	c.run("image-package", "pack-os", "--rootfs", rootfs, "--component-id", osID, "--name", "Contoso Linux",
		"--version", "2026.08.1", "--security-version", "12", "--key", key, "--out", pkg)
	h, payload := payloadOf(t, pkg)
	if !bytes.Equal(payload, mustRead(t, rootfs)) {
		t.Error("payload is not the rootfs file")
	}
	md := h.Metadata
	if md.Kind != image.KindOS || md.ComponentID != osID || md.Name != "Contoso Linux" || md.Version != "2026.08.1" ||
		md.SecurityVersion != 12 || md.AppManifest != nil || len(md.Chunks) < 2 || time.Since(md.BuildTime) > time.Minute {
		t.Errorf("metadata = %+v", md)
	}
	info := c.showJSON(pkg, "--verify-key", key)
	if !info.PayloadVerified || !info.SignatureCheck.Valid || info.Metadata.Kind != image.KindOS {
		t.Errorf("show = %+v", info)
	}
	if md.FormatVersion != 2 || md.Chunking() != image.Chunking16K {
		t.Errorf("packed format %d with %+v, want format 2 with 16 KiB chunks", md.FormatVersion, md.Chunking())
	}
	// Format 1 on request, for a fleet whose agents predate format 2.
	pkg1 := filepath.Join(tmp, "os1.pkg")
	c.run("image-package", "pack-os", "--rootfs", rootfs, "--component-id", osID, "--name", "Contoso Linux",
		"--version", "2026.08.1", "--security-version", "12", "--key", key, "--out", pkg1, "--format-version", "1")
	if h1, _ := payloadOf(t, pkg1); h1.Metadata.FormatVersion != 1 || h1.Metadata.Chunking() != image.Chunking64K {
		t.Errorf("--format-version 1 packed format %d with %+v", h1.Metadata.FormatVersion, h1.Metadata.Chunking())
	}

	c.fails(`component_id: "9D1E8F2A-4B3C-4D5E-8F6A-7B8C9D0E1F2A" must be written in lowercase`, "image-package", "pack-os", "--rootfs", rootfs,
		"--component-id", strings.ToUpper(osID), "--name", "X", "--version", "1", "--key", key, "--out", filepath.Join(tmp, "x.pkg"))
	c.fails(`required flag(s) "component-id", "name", "version" not set`, "image-package", "pack-os", "--rootfs", rootfs, "--key", key, "--out", pkg)
	c.fails("--rootfs: stat", "image-package", "pack-os", "--rootfs", filepath.Join(tmp, "missing"),
		"--component-id", osID, "--name", "X", "--version", "1", "--key", key, "--out", filepath.Join(tmp, "x.pkg"))
	c.fails("is not a regular file", "image-package", "pack-os", "--rootfs", tmp,
		"--component-id", osID, "--name", "X", "--version", "1", "--key", key, "--out", filepath.Join(tmp, "x.pkg"))
	c.fails(`--build-time "yesterday": want RFC 3339`, "image-package", "pack-os", "--rootfs", rootfs, "--build-time", "yesterday",
		"--component-id", osID, "--name", "X", "--version", "1", "--key", key, "--out", filepath.Join(tmp, "x.pkg"))
	c.fails("format_version 3 is not supported (want 1 or 2)", "image-package", "pack-os", "--rootfs", rootfs, "--format-version", "3",
		"--component-id", osID, "--name", "X", "--version", "1", "--key", key, "--out", filepath.Join(tmp, "x.pkg"))
	if _, err := os.Stat(filepath.Join(tmp, "x.pkg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed pack left an output file: %v", err)
	}
}

func TestImagePkgAppErrors(t *testing.T) {
	c := pkgcli{t}
	tmp := t.TempDir()
	key := filepath.Join(tmp, "k.pem")
	c.run("image-package", "keygen", "--out", key)
	out := filepath.Join(tmp, "app.pkg")
	pack := func(dir string) []string {
		return []string{"image-package", "pack-app", "--dir", dir, "--key", key, "--out", out}
	}

	c.fails(`app_manifest.json: app manifest: unknown capability "Gpios"`, pack(writeAppDir(t, `{"Gpios":[1]}`))...)
	c.fails(`Capabilities.AllowedTcpServerPorts[0]: 70000 is not a port number`, pack(writeAppDir(t, `{"AllowedTcpServerPorts":[70000]}`))...)

	dir := writeAppDir(t, `{}`)
	os.Symlink("../../../etc/passwd", filepath.Join(dir, "etc/passwd"))
	c.fails("symbolic link etc/passwd -> ../../../etc/passwd points outside the app directory", pack(dir)...)

	// A chain of links that each look inside but resolve outside.
	dir = writeAppDir(t, `{}`)
	os.Symlink("..", filepath.Join(dir, "share/up"))
	os.Symlink("share/up/..", filepath.Join(dir, "zz-out"))
	c.fails("zz-out -> share/up/.. points outside the app directory", pack(dir)...)

	dir = writeAppDir(t, `{}`)
	os.Symlink("/etc/hostname", filepath.Join(dir, "etc/hostname"))
	c.fails("symbolic link etc/hostname -> /etc/hostname is absolute", pack(dir)...)

	dir = writeAppDir(t, `{}`)
	os.Symlink("missing", filepath.Join(dir, "etc/dangling"))
	c.fails("etc/dangling -> missing points to nothing", pack(dir)...)

	dir = writeAppDir(t, `{}`)
	os.Chmod(filepath.Join(dir, "bin/app"), 0o644)
	c.fails("EntryPoint /bin/app is not executable", pack(dir)...)
	os.Remove(filepath.Join(dir, "bin/app"))
	c.fails("EntryPoint /bin/app: stat", pack(dir)...)

	c.fails("an app directory must hold app_manifest.json", pack(tmp)...)
	c.fails("--key "+filepath.Join(tmp, "app_manifest.json"), "image-package", "sign", "--key", writeFile(t, tmp, "app_manifest.json", []byte("{}")), "--in", out, "--out", out)
	c.fails(`--output (-o) must be table or json, not "app.pkg"; write the file with --out app.pkg`, "image-package", "pack-app", "--dir", tmp, "--key", key, "-o", "app.pkg")
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed pack left an output file: %v", err)
	}
}

func TestImagePkgHelp(t *testing.T) {
	c := pkgcli{t}
	for _, sub := range []string{"", "pack-app", "pack-os", "show", "sign", "keygen"} {
		args := []string{"image-package"}
		if sub != "" {
			args = append(args, sub)
		}
		out := c.run(append(args, "--help")...)
		if !strings.Contains(out, "Usage:") || (sub != "" && !strings.Contains(out, "Example")) {
			t.Errorf("sphere %s --help:\n%s", strings.Join(args, " "), out)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
