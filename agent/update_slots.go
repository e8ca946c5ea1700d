package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/opensphere/sphere/fetch"
	"github.com/opensphere/sphere/image"
	"github.com/opensphere/sphere/supervisor"
	"github.com/opensphere/sphere/tlsutil"
)

// The slots: an OS image goes to the inactive A/B slot (a file or a block
// device), an app image to its own versioned directory
// Dir/apps/<component>/<image id>/, next to the package it came from
// (<image id>.pkg, the chunk source of the next delta). The previous app
// version stays until the new one is committed.

// slotWriteBlock is how much of an OS image is written between two
// failpoints ("slot-write").
const slotWriteBlock = 1 << 20

func (u *Updater) appDir(img installed) string {
	return filepath.Join(u.dir, appsDir, img.ComponentID, img.ImageID)
}

// write puts the verified package's payload into its slot.
func (u *Updater) write(t *txn) error {
	f, err := os.Open(u.staged(t))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) { // staging lost: fetch again
			t.Step = stepDownloading
			return u.save()
		}
		return fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	off, err := payloadOffset(f, t.Image.PayloadSize)
	if err != nil {
		return fmt.Errorf("update: %w", err)
	}
	payload := io.NewSectionReader(f, off, t.Image.PayloadSize)
	if t.Target.Kind == "os" {
		err = u.writeOSSlot(t, payload)
	} else {
		err = u.writeAppSlot(t, payload)
	}
	if err != nil {
		return err
	}
	u.failpoint("slot-written")
	t.Step = stepWritten
	if err := u.save(); err != nil {
		return err
	}
	u.failpoint("written")
	return nil
}

// writeOSSlot copies the payload to the inactive slot, syncs it, and reads
// it back: the slot must hold exactly the payload the metadata names.
func (u *Updater) writeOSSlot(t *txn, payload *io.SectionReader) error {
	slotPath := u.cfg.Slots[t.Slot]
	if active, err := u.boot.Active(); err != nil || active == t.Slot {
		return permanent("slot %s is the running one (or the running one is unknown: %v); not writing it", t.Slot, err)
	}
	out, err := os.OpenFile(slotPath, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("update: open slot %s: %w", t.Slot, err)
	}
	buf := make([]byte, slotWriteBlock)
	var written int64
	for {
		n, rerr := payload.Read(buf)
		if n > 0 {
			if _, err := out.WriteAt(buf[:n], written); err != nil {
				out.Close()
				return fmt.Errorf("update: write slot %s: %w", t.Slot, err)
			}
			written += int64(n)
			u.failpoint("slot-write")
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return fmt.Errorf("update: read staged package: %w", rerr)
		}
	}
	if fi, err := out.Stat(); err == nil && fi.Mode().IsRegular() {
		if err := out.Truncate(written); err != nil {
			out.Close()
			return err
		}
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return fmt.Errorf("update: sync slot %s: %w", t.Slot, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	sum, err := slotSHA256(slotPath, t.Image.PayloadSize)
	if err != nil {
		return fmt.Errorf("update: read back slot %s: %w", t.Slot, err)
	}
	if want := u.payloadSHA(t); sum != want {
		return permanent("slot %s does not read back as the image written (SHA-256 %s, want %s)", t.Slot, sum, want)
	}
	return nil
}

// payloadSHA is the payload digest of the staged package.
func (u *Updater) payloadSHA(t *txn) string {
	f, err := os.Open(u.staged(t))
	if err != nil {
		return ""
	}
	defer f.Close()
	h, err := image.ReadHeader(f)
	if err != nil {
		return ""
	}
	return h.Metadata.PayloadSHA256
}

// slotSHA256 is the SHA-256 of the first size bytes of a slot.
func slotSHA256(path string, size int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if n, err := io.Copy(h, io.NewSectionReader(f, 0, size)); err != nil || n != size {
		return "", fmt.Errorf("read %d of %d bytes: %v", n, size, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// writeAppSlot unpacks the payload into the app's versioned directory and
// keeps the package beside it.
func (u *Updater) writeAppSlot(t *txn, payload *io.SectionReader) error {
	dir := u.appDir(t.Image)
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	os.RemoveAll(dir) // a restart may have left part of it
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := untar(payload, tmp, maxAppBytes); err != nil {
		return permanent("app payload of %s: %v", t.Image.ImageID, err)
	}
	u.failpoint("slot-write")
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	if err := os.Link(u.staged(t), dir+".pkg"); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return tlsutil.SyncDir(parent)
}

func (u *Updater) removeAppSlot(img installed) {
	dir := u.appDir(img)
	os.RemoveAll(dir)
	os.RemoveAll(dir + ".tmp")
	os.Remove(dir + ".pkg")
}

// chunkSource indexes the chunks the device already has for t's
// component: the payload in the booted OS slot, or the package of the
// installed app version.
func (u *Updater) chunkSource(t *txn) (fetch.ChunkSource, func()) {
	cur, ok := u.j.Components[t.Target.ComponentID]
	if !ok {
		return nil, func() {}
	}
	var f *os.File
	var off int64
	var err error
	if cur.Kind == "os" {
		f, err = os.Open(u.cfg.Slots[cur.Slot])
	} else {
		f, err = os.Open(u.appDir(cur) + ".pkg")
		if err == nil {
			off, err = payloadOffset(f, cur.PayloadSize)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		u.log.Info("no local chunks for a delta", "err", err)
		return nil, func() {}
	}
	x := fetch.NewIndex()
	x.Add(io.NewSectionReader(f, off, cur.PayloadSize), cur.PayloadSize)
	return x, func() { f.Close() }
}

// switchOS arms the written slot for a trial boot and reboots; after the
// reboot it runs the health check. Which of these is due follows from the
// journal and the bootloader's state together, so a restart between any
// two of them comes out the same.
func (u *Updater) switchOS(ctx context.Context, t *txn) error {
	st, err := u.boot.State()
	if err != nil {
		return fmt.Errorf("update: bootloader state: %w", err)
	}
	switch {
	case st.Booted == t.Slot && st.Trial:
		u.refreshEvents()
		if err := u.healthy(ctx); err != nil {
			return err
		}
		u.failpoint("healthy")
		t.Step = stepCommitting
		return u.save()
	case st.Booted == t.Slot: // committed before the journal said so
		t.Step = stepCommitting
		return u.save()
	case st.Next == t.Slot: // armed; the reboot has not happened
		if t.Step != stepArmed {
			t.Step = stepArmed
			if err := u.save(); err != nil {
				return err
			}
		}
		return u.reboot()
	case t.Step == stepArmed: // the trial boot came back to the old slot
		t.Step, t.Reason = stepRollingBack, fmt.Sprintf("the new OS did not come up: the bootloader went back to slot %s", st.Booted)
		return u.save()
	}
	if err := u.boot.TryNext(t.Slot); err != nil {
		return fmt.Errorf("update: arm slot %s: %w", t.Slot, err)
	}
	u.failpoint("armed-bootloader")
	t.Step = stepArmed
	if err := u.save(); err != nil {
		return err
	}
	u.failpoint("armed")
	return u.reboot()
}

// switchApp starts the new app version in place of the old one.
func (u *Updater) switchApp(t *txn) error {
	t.Step = stepTrial
	if err := u.save(); err != nil {
		return err
	}
	u.setApps()
	u.failpoint("switched")
	return nil
}

// trialApp runs the health check of a switched app.
func (u *Updater) trialApp(ctx context.Context, t *txn) error {
	if err := u.healthy(ctx); err != nil {
		return err
	}
	u.failpoint("healthy")
	t.Step = stepCommitting
	return u.save()
}

// runningApps are the apps that should run: the committed ones, with the
// app on trial in place of its component's committed version.
func (u *Updater) runningApps() []installed {
	byID := map[string]installed{}
	for id, c := range u.j.Components {
		if c.Kind == "app" {
			byID[id] = c
		}
	}
	if t := u.j.Txn; t != nil && t.Target.Kind == "app" && t.Step == stepTrial {
		byID[t.Image.ComponentID] = t.Image
	}
	out := make([]installed, 0, len(byID))
	for _, c := range byID {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ComponentID < out[j].ComponentID })
	return out
}

// setApps hands the supervisor the apps that should run.
func (u *Updater) setApps() {
	if u.cfg.Apps == nil {
		return
	}
	var apps []supervisor.App
	for _, c := range u.runningApps() {
		m, err := u.manifest(c)
		if err != nil {
			u.log.Error("installed app is unreadable; not running it", "component", c.ComponentID, "image", c.ImageID, "err", err)
			continue
		}
		apps = append(apps, supervisor.App{ComponentID: c.ComponentID, ImageID: c.ImageID, Version: c.Version, Dir: u.appDir(c), Manifest: *m})
	}
	u.cfg.Apps.Set(apps)
	u.refreshEvents()
}

// manifest reads an installed app's manifest from the metadata of its
// package (the signed one, not the copy in the payload).
func (u *Updater) manifest(c installed) (*image.AppManifest, error) {
	f, err := os.Open(u.appDir(c) + ".pkg")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := image.ReadHeader(f)
	if err != nil {
		return nil, err
	}
	if h.ImageID() != c.ImageID || h.Metadata.AppManifest == nil {
		return nil, fmt.Errorf("%s.pkg is not image %s", c.ImageID, c.ImageID)
	}
	return h.Metadata.AppManifest, nil
}
