//go:build !agentonly

package cli

import (
	"archive/tar"
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/tlsutil"
)

// The image-package commands work on files only; they need no service and
// no login, so a build machine can sign images offline.

func (a *app) imagePackageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image-package",
		Short: "Build, inspect and sign image packages (offline: files only, no service needed)",
		Long: `Build, inspect and sign OpenSphere image packages: the signed files that carry an
OS image or an app to devices.

A package holds metadata (kind, component id, name, version, security version,
build time, the payload's size, SHA-256 and chunk index, and for an app its
app_manifest.json), an ECDSA P-256 signature over the metadata, and the payload.
Its image id is the SHA-256 of the metadata, so re-signing keeps it.
The format is described in docs/image-package.md.

  sphere image-package keygen --out signer.pem
  sphere image-package pack-app --dir ./app --key signer.pem --out app.pkg
  sphere image-package pack-os --rootfs rootfs.img --component-id GUID --name NAME \
      --version V --security-version N --key signer.pem --out os.pkg
  sphere image-package show app.pkg
  sphere image-package sign --key customer.pem --in app.pkg --out app-signed.pkg

-o is short for --output (table or json) in every sphere command; files are
written with --out.`,
		// This replaces the root's check, so it repeats it, with a hint for
		// the likely mistake of writing -o FILE.
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if a.output != "table" && a.output != "json" {
				return fmt.Errorf("--output (-o) must be table or json, not %q; write the file with --out %s", a.output, a.output)
			}
			return nil
		},
	}
	cmd.AddCommand(a.imagePackApp(), a.imagePackOS(), a.imagePackShow(), a.imagePackSign(), a.imagePackKeygen())
	return cmd
}

// imagePackFlags are the flags pack-app and pack-os share.
type imagePackFlags struct {
	key, out, version, buildTime string
	securityVersion              uint32
	format                       int
}

func (f *imagePackFlags) register(cmd *cobra.Command, versionDefault string) {
	fl := cmd.Flags()
	fl.StringVar(&f.key, "key", "", "signing key `FILE`: ECDSA P-256 private key PEM (PKCS#8 or SEC1), such as one made by sphere image-package keygen")
	fl.StringVar(&f.out, "out", "", "the package `FILE` to write (replaced only once complete)")
	fl.StringVar(&f.version, "version", versionDefault, "`VERSION` for people and tools: up to 64 letters, digits and . + ~ _ -, such as 1.4.2")
	fl.Uint32Var(&f.securityVersion, "security-version", 0, "anti-rollback counter `N` (0 to 4294967295): devices never install an image of this component with a lower one than they have run; raise it when the image fixes a vulnerability")
	fl.IntVar(&f.format, "format-version", image.FormatVersion, "package format `N`: 2 (chunks of 16 KiB on average up to a 1 GiB payload, 64 KiB beyond: smaller delta updates), or 1 (64 KiB chunks) for a fleet whose agents predate format 2 and refuse it")
	fl.StringVar(&f.buildTime, "build-time", "", "build `TIME` recorded in the metadata, RFC 3339 such as 2026-08-01T12:00:00Z (default: now); fix it for reproducible packages")
}

func (f *imagePackFlags) time() (time.Time, error) {
	if f.buildTime == "" {
		return time.Now().UTC().Truncate(time.Second), nil
	}
	t, err := time.Parse(time.RFC3339, f.buildTime)
	if err != nil {
		return time.Time{}, fmt.Errorf("--build-time %q: want RFC 3339, such as 2026-08-01T12:00:00Z", f.buildTime)
	}
	return t, nil
}

func (a *app) imagePackApp() *cobra.Command {
	var f imagePackFlags
	var dir, name string
	cmd := &cobra.Command{
		Use:   "pack-app",
		Short: "Pack a directory holding an app and its app_manifest.json into a signed package",
		Long: `Pack an app into a signed image package.

DIR must hold app_manifest.json (SchemaVersion, Name, ComponentId, EntryPoint,
CmdArgs, Capabilities; see docs/image-package.md) and the app's files; the
EntryPoint, such as /bin/app, must be an executable file in DIR. The manifest is
checked strictly: an unknown or misspelled capability is an error that names it.

The payload is a tar of DIR: directories, regular files and symbolic links, in
sorted order, with permission bits kept (rwx for user, group and others; setuid,
setgid and sticky bits dropped) and everything else zeroed (times, owners), so
packing the same files twice gives the same image id when --build-time and
--version are the same. Symbolic links must be relative and point inside DIR.
Devices, sockets and pipes are refused.

The component id comes from the manifest; the package name from --name or the
manifest's Name.`,
		Example: `  sphere image-package pack-app --dir ./blink --key signer.pem --out blink.pkg --version 1.2.0 --security-version 3`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bt, err := f.time()
			if err != nil {
				return err
			}
			signer, err := loadImageSigner(f.key)
			if err != nil {
				return err
			}
			m, err := readAppManifest(dir)
			if err != nil {
				return err
			}
			if err := checkAppEntryPoint(dir, m.EntryPoint); err != nil {
				return err
			}
			payload, err := os.CreateTemp("", "sphere-app-*.tar")
			if err != nil {
				return err
			}
			defer os.Remove(payload.Name())
			defer payload.Close()
			bw := bufio.NewWriterSize(payload, 1<<20)
			if err := tarAppDir(bw, dir); err != nil {
				return err
			}
			if err := bw.Flush(); err != nil {
				return fmt.Errorf("write payload: %w", err)
			}
			if name == "" {
				name = m.Name
			}
			md := image.Metadata{Kind: image.KindApp, ComponentID: m.ComponentId, Name: name, Version: f.version,
				SecurityVersion: f.securityVersion, BuildTime: bt, AppManifest: m, FormatVersion: f.format}
			var h *image.Header
			err = writeFileStreamAtomic(f.out, 0o644, func(w io.Writer) error {
				h, err = image.Pack(w, md, payload, signer)
				return err
			})
			if err != nil {
				return err
			}
			return a.showPackage(f.out, h, true, nil)
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "`DIR` holding app_manifest.json and the app's files")
	cmd.Flags().StringVar(&name, "name", "", "package `NAME`: 1 to 64 printable characters (default: the manifest's Name)")
	f.register(cmd, "0.0.0")
	requireFlags(cmd, "dir", "key", "out")
	return cmd
}

func (a *app) imagePackOS() *cobra.Command {
	var f imagePackFlags
	var rootfs, componentID, name string
	cmd := &cobra.Command{
		Use:   "pack-os",
		Short: "Pack an OS root filesystem image into a signed package",
		Long: `Pack an OS image into a signed image package. The payload is the --rootfs file
as it is (for instance a squashfs or ext4 image that the agent writes to the
inactive slot). The package records its size, SHA-256 and chunk index, so that
devices can fetch only the chunks that changed since the image they run.`,
		Example: `  sphere image-package pack-os --rootfs rootfs.squashfs --component-id 9d1e8f2a-4b3c-4d5e-8f6a-7b8c9d0e1f2a \
      --name "Contoso Linux" --version 2026.08.1 --security-version 12 --key signer.pem --out os.pkg`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bt, err := f.time()
			if err != nil {
				return err
			}
			signer, err := loadImageSigner(f.key)
			if err != nil {
				return err
			}
			fi, err := os.Stat(rootfs)
			if err != nil {
				return fmt.Errorf("--rootfs: %w", err)
			}
			if !fi.Mode().IsRegular() {
				return fmt.Errorf("--rootfs %s is not a regular file", rootfs)
			}
			md := image.Metadata{Kind: image.KindOS, ComponentID: componentID, Name: name, Version: f.version,
				SecurityVersion: f.securityVersion, BuildTime: bt, FormatVersion: f.format}
			var h *image.Header
			err = writeFileStreamAtomic(f.out, 0o644, func(w io.Writer) error {
				h, err = image.PackFile(w, md, rootfs, signer)
				return err
			})
			if err != nil {
				return err
			}
			return a.showPackage(f.out, h, true, nil)
		},
	}
	cmd.Flags().StringVar(&rootfs, "rootfs", "", "the OS image `FILE`: the payload, packed as it is")
	cmd.Flags().StringVar(&componentID, "component-id", "", "the OS component's `GUID`, lowercase (the same for every version of this OS)")
	cmd.Flags().StringVar(&name, "name", "", "`NAME` for people: 1 to 64 printable characters")
	f.register(cmd, "")
	requireFlags(cmd, "rootfs", "component-id", "name", "version", "key", "out")
	return cmd
}

func (a *app) imagePackShow() *cobra.Command {
	var verifyKey string
	cmd := &cobra.Command{
		Use:   "show FILE",
		Short: "Show a package's metadata and check its payload (and, with --verify-key, its signature)",
		Long: `Show an image package: its image id, metadata, app manifest and signer key id.
It reads the whole payload and checks it against the size, SHA-256 and chunk index
in the metadata, and fails if it does not match. With --verify-key it also checks
that the package is signed by that key and that the signature is valid.`,
		Example: `  sphere image-package show app.pkg
  sphere image-package show app.pkg --verify-key signer.pub.pem --output json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var pub *ecdsa.PublicKey
			if verifyKey != "" {
				data, err := os.ReadFile(verifyKey)
				if err != nil {
					return fmt.Errorf("--verify-key: %w", err)
				}
				if pub, err = image.ParsePublicKeyPEM(data); err != nil {
					return fmt.Errorf("--verify-key %s: %w", verifyKey, err)
				}
			}
			file, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer file.Close()
			// ReadHeader reads exactly the header, leaving file at the payload.
			h, err := image.ReadHeader(file)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			payloadErr := image.VerifyPayload(bufio.NewReaderSize(file, 1<<20), h)
			var sigErr error
			if pub != nil {
				sigErr = h.VerifySignature(pub)
			}
			if err := a.showPackage(args[0], h, payloadErr == nil, pkgSigCheckFor(pub, sigErr)); err != nil {
				return err
			}
			if payloadErr != nil {
				return fmt.Errorf("%s: %w", args[0], payloadErr)
			}
			if sigErr != nil {
				return fmt.Errorf("%s: %w", args[0], sigErr)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&verifyKey, "verify-key", "", "also check the signature against the public key in `FILE` (PEM: PUBLIC KEY, CERTIFICATE or a private key)")
	return cmd
}

func (a *app) imagePackSign() *cobra.Command {
	var key, in, out string
	cmd := &cobra.Command{
		Use:   "sign",
		Short: "Re-sign a package with another key, such as your own; the image id stays the same",
		Long: `Re-sign an image package: replace its signature with one by --key and copy the
payload, checking it against the metadata on the way. The metadata is not
changed, so the image id stays the same. The old signature is not checked: check
it first with "sphere image-package show FILE --verify-key KEY" if it matters.
--out may be the same file as --in; it is replaced only once the new package is
complete.`,
		Example: `  sphere image-package sign --key customer.pem --in vendor-app.pkg --out app.pkg`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			signer, err := loadImageSigner(key)
			if err != nil {
				return err
			}
			file, err := os.Open(in)
			if err != nil {
				return fmt.Errorf("--in: %w", err)
			}
			defer file.Close()
			var h *image.Header
			err = writeFileStreamAtomic(out, 0o644, func(w io.Writer) error {
				h, err = image.Resign(w, file, signer)
				return err
			})
			if err != nil {
				return fmt.Errorf("%s: %w", in, err)
			}
			return a.showPackage(out, h, true, pkgSigCheckFor(&signer.PublicKey, nil))
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the new signing key `FILE`: ECDSA P-256 private key PEM (PKCS#8 or SEC1)")
	cmd.Flags().StringVar(&in, "in", "", "the package `FILE` to re-sign")
	cmd.Flags().StringVar(&out, "out", "", "the re-signed package `FILE` to write (may be --in itself)")
	requireFlags(cmd, "key", "in", "out")
	return cmd
}

// signingKeyInfo is what keygen reports.
type signingKeyInfo struct {
	File         string `json:"file"`
	KeyID        string `json:"key_id"`
	PublicKeyPEM string `json:"public_key_pem"`
	PublicFile   string `json:"public_file,omitempty"`
}

func (a *app) imagePackKeygen() *cobra.Command {
	var out, pubOut string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Create an image signing key (ECDSA P-256, PKCS#8 PEM, mode 0600)",
		Long: `Create an image signing key: an ECDSA P-256 private key written as PKCS#8 PEM to
--out with mode 0600. It prints the public key (PEM) and its key id, the SHA-256 of
the public key's SubjectPublicKeyInfo, which packages signed with the key name.
Keep the private key secret; give the public key to whoever must trust the images.
An existing file is not replaced unless --force is given.`,
		Example: `  sphere image-package keygen --out signer.pem --public-out signer.pub.pem`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, p := range []string{out, pubOut} {
				if p == "" || force {
					continue
				}
				if _, err := os.Lstat(p); err == nil {
					return fmt.Errorf("%s exists; pass --force to replace it", p)
				}
			}
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			if err := tlsutil.WriteFileAtomic(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return err
			}
			spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
			if err != nil {
				return err
			}
			pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki})
			if pubOut != "" {
				if err := tlsutil.WriteFileAtomic(pubOut, pubPEM, 0o644); err != nil {
					return err
				}
			}
			kid, err := image.KeyID(&key.PublicKey)
			if err != nil {
				return err
			}
			info := signingKeyInfo{File: out, KeyID: kid, PublicKeyPEM: string(pubPEM), PublicFile: pubOut}
			if a.output == "json" {
				return a.show(info, nil, nil)
			}
			fmt.Fprintf(a.stdout, "Wrote the private key to %s (mode 0600). Keep it secret.\n", out)
			if pubOut != "" {
				fmt.Fprintf(a.stdout, "Wrote the public key to %s.\n", pubOut)
			}
			fmt.Fprintf(a.stdout, "Key ID: %s\n%s", kid, pubPEM)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "the private key `FILE` to write")
	cmd.Flags().StringVar(&pubOut, "public-out", "", "also write the public key (PEM) to `FILE`")
	cmd.Flags().BoolVar(&force, "force", false, "replace existing files")
	requireFlags(cmd, "out")
	return cmd
}

// pkgSigCheck is the outcome of checking a signature against a given key.
type pkgSigCheck struct {
	KeyID string `json:"key_id"`
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
}

func pkgSigCheckFor(pub *ecdsa.PublicKey, err error) *pkgSigCheck {
	if pub == nil {
		return nil
	}
	kid, _ := image.KeyID(pub)
	c := &pkgSigCheck{KeyID: kid, Valid: err == nil}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

// imagePackageInfo is what the image-package commands print about a package.
type imagePackageInfo struct {
	File               string         `json:"file"`
	ImageID            string         `json:"image_id"`
	SignerKeyID        string         `json:"signer_key_id"`
	SignatureAlgorithm string         `json:"signature_algorithm"`
	PayloadVerified    bool           `json:"payload_verified"`
	SignatureCheck     *pkgSigCheck   `json:"signature_check,omitempty"`
	Metadata           image.Metadata `json:"metadata"`
}

func (a *app) showPackage(file string, h *image.Header, payloadOK bool, sig *pkgSigCheck) error {
	md := h.Metadata
	info := imagePackageInfo{File: file, ImageID: h.ImageID(), SignerKeyID: h.Signature.KeyID,
		SignatureAlgorithm: h.Signature.Algorithm, PayloadVerified: payloadOK, SignatureCheck: sig, Metadata: md}
	payload := "verified: matches its size, SHA-256 and chunk index"
	if !payloadOK {
		payload = "CORRUPT: does not match the metadata"
	}
	signature := "not checked (pass --verify-key)"
	if sig != nil && sig.Valid {
		signature = "valid, by key " + sig.KeyID
	} else if sig != nil {
		signature = "NOT VALID: " + sig.Error
	}
	fields := [][2]string{
		{"File", file}, {"Image ID", info.ImageID}, {"Kind", string(md.Kind)}, {"Name", md.Name},
		{"Component ID", md.ComponentID}, {"Version", md.Version},
		{"Security version", strconv.FormatUint(uint64(md.SecurityVersion), 10)}, {"Build time", ts(md.BuildTime)},
		{"Format", fmt.Sprintf("%d (chunks of %d KiB on average)", md.FormatVersion, md.Chunking().Avg>>10)},
		{"Payload size", fmt.Sprintf("%d bytes in %d chunk%s", md.PayloadSize, len(md.Chunks), pkgPlural(len(md.Chunks)))},
		{"Payload SHA-256", md.PayloadSHA256}, {"Payload", payload},
		{"Signer key ID", h.Signature.KeyID}, {"Signature", signature},
	}
	if m := md.AppManifest; m != nil {
		fields = append(fields, [2]string{"App name", m.Name}, [2]string{"Entry point", strings.Join(append([]string{m.EntryPoint}, m.CmdArgs...), " ")})
		for _, c := range capabilityRows(&m.Capabilities) {
			fields = append(fields, [2]string{"Capability " + c[0], c[1]})
		}
	}
	return a.showFields(info, fields)
}

func pkgPlural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// capabilityRows lists the capabilities a manifest grants, one row each.
func capabilityRows(c *image.Capabilities) [][2]string {
	var rows [][2]string
	list := func(name string, v []string) {
		if len(v) > 0 {
			rows = append(rows, [2]string{name, strings.Join(v, ", ")})
		}
	}
	ints := func(name string, v []int) {
		s := make([]string, len(v))
		for i, n := range v {
			s[i] = strconv.Itoa(n)
		}
		list(name, s)
	}
	flag := func(name string, v bool) {
		if v {
			rows = append(rows, [2]string{name, "yes"})
		}
	}
	list("AllowedConnections", c.AllowedConnections)
	ints("AllowedTcpServerPorts", c.AllowedTcpServerPorts)
	ints("AllowedUdpServerPorts", c.AllowedUdpServerPorts)
	if c.DeviceAuthentication != "" {
		rows = append(rows, [2]string{"DeviceAuthentication", c.DeviceAuthentication})
	}
	ints("Gpio", c.Gpio)
	list("Uart", c.Uart)
	list("I2cMaster", c.I2cMaster)
	list("SpiMaster", c.SpiMaster)
	list("Pwm", c.Pwm)
	list("Adc", c.Adc)
	if c.MutableStorage != nil {
		rows = append(rows, [2]string{"MutableStorage", fmt.Sprintf("%d KiB", c.MutableStorage.SizeKB)})
	}
	flag("SoftwareUpdateDeferral", c.SoftwareUpdateDeferral)
	flag("SystemEventNotifications", c.SystemEventNotifications)
	list("PowerControls", c.PowerControls)
	flag("NetworkConfig", c.NetworkConfig)
	if len(rows) == 0 {
		rows = append(rows, [2]string{"(none)", "the app may use nothing beyond its own files"})
	}
	return rows
}

func loadImageSigner(path string) (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	k, err := image.ParsePrivateKeyPEM(data)
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	return k, nil
}

// readAppManifest reads and checks DIR/app_manifest.json.
func readAppManifest(dir string) (*image.AppManifest, error) {
	p := filepath.Join(dir, "app_manifest.json")
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("--dir: %w (an app directory must hold app_manifest.json)", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, image.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	m, err := image.ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return m, nil
}

// checkAppEntryPoint fails unless the manifest's EntryPoint is an executable
// regular file in dir: an app that cannot start is better found here than
// on a device.
func checkAppEntryPoint(dir, entry string) error {
	p := filepath.Join(dir, filepath.FromSlash(entry))
	fi, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("app_manifest.json: EntryPoint %s: %w", entry, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("app_manifest.json: EntryPoint %s is not a regular file", entry)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("app_manifest.json: EntryPoint %s is not executable (chmod +x %s)", entry, p)
	}
	return nil
}

// tarAppDir writes a reproducible tar of dir to w: directories, regular files
// and relative symbolic links that stay inside dir, in sorted order, with
// permission bits kept and times and owners zeroed.
func tarAppDir(w io.Writer, dir string) error {
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("--dir: %w", err)
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		return fmt.Errorf("--dir %s is not a directory", dir)
	}
	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), ModTime: epoch, Format: tar.FormatPAX}
		switch mode := fi.Mode(); {
		case mode.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case mode.IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		case mode&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := checkAppSymlink(root, p, name, target); err != nil {
				return err
			}
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, filepath.ToSlash(target)
		default:
			return fmt.Errorf("%s is a %s; an app holds only directories, regular files and symbolic links", name, mode.Type())
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		if n, err := io.Copy(tw, f); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		} else if n != hdr.Size {
			return fmt.Errorf("%s changed while it was being packed", name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return tw.Close()
}

// checkAppSymlink refuses a link that is absolute or that resolves, on the
// file system as it is, outside root.
func checkAppSymlink(root, p, name, target string) error {
	if filepath.IsAbs(target) {
		return fmt.Errorf("symbolic link %s -> %s is absolute; make it relative (an app's files are not mounted at /)", name, target)
	}
	outside := fmt.Errorf("symbolic link %s -> %s points outside the app directory", name, target)
	// Lexically first, for a clear message when the target does not exist
	// here; then as resolved, since a link through another link can
	// climb out while looking as if it stays inside.
	if !appPathInside(root, filepath.Join(filepath.Dir(p), target)) {
		return outside
	}
	resolved, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("symbolic link %s -> %s points to nothing in the directory", name, target)
	}
	if !appPathInside(root, resolved) {
		return outside
	}
	return nil
}

// appPathInside reports whether path p is root or below it.
func appPathInside(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// writeFileStreamAtomic writes path from what write produces, so that a crash or
// an error leaves the old file or none, never a partial one: like
// tlsutil.WriteFileAtomic, but streamed, for files too big for memory.
func writeFileStreamAtomic(path string, perm os.FileMode, write func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}
