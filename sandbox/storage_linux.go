package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// minImageKB is the smallest ext4 image mkfs.ext4 makes; smaller declared
// sizes get this much.
const minImageKB = 128

// prepareStorage makes the app's storage: with the quota, an ext4 image of
// the declared size at StorageDir+".img" whose root the app owns (mounted by
// the compartment's init); without, a plain directory the app owns. It
// returns the image path, or "" for a plain directory.
func (s *Sandbox) prepareStorage(spec *Spec) (string, error) {
	ms := spec.Manifest.Capabilities.MutableStorage
	if err := os.MkdirAll(spec.StorageDir, 0o700); err != nil {
		return "", fmt.Errorf("sandbox: app %s storage: %w", spec.ComponentID, err)
	}
	if !s.status.Active(ProtStorageQuota) {
		if err := os.Chown(spec.StorageDir, int(spec.UID), int(spec.GID)); err != nil {
			return "", fmt.Errorf("sandbox: app %s storage: %w", spec.ComponentID, err)
		}
		s.log.Error("sandbox: storage quota NOT enforced", "app", spec.ComponentID, "declared_kb", ms.SizeKB)
		return "", nil
	}
	img := spec.StorageDir + ".img"
	kb := max(ms.SizeKB, minImageKB)
	switch fi, err := os.Stat(img); {
	case err == nil:
		if have := fi.Size() / 1024; have != int64(kb) {
			// Growing or shrinking a filesystem under an app's data is an
			// update concern; until then the app keeps the size it had.
			s.log.Warn("sandbox: storage image size differs from the manifest; keeping the image", "app", spec.ComponentID, "image_kb", have, "declared_kb", kb)
		}
		return img, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("sandbox: app %s storage image: %w", spec.ComponentID, err)
	}
	mkfs, err := findMkfs(s.cfg.Mkfs)
	if err != nil {
		return "", err
	}
	tmp := img + ".new"
	if err := os.WriteFile(tmp, nil, 0o600); err != nil {
		return "", fmt.Errorf("sandbox: app %s storage image: %w", spec.ComponentID, err)
	}
	defer os.Remove(tmp)
	if err := os.Truncate(tmp, int64(kb)*1024); err != nil {
		return "", fmt.Errorf("sandbox: app %s storage image: %w", spec.ComponentID, err)
	}
	args := []string{"-q", "-F", "-m", "0", "-E", fmt.Sprintf("root_owner=%d:%d", spec.UID, spec.GID)}
	if kb < 4096 {
		args = append(args, "-O", "^has_journal") // a journal needs 1024 blocks
	}
	out, err := exec.Command(mkfs, append(args, tmp)...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("sandbox: app %s: %s: %v: %s", spec.ComponentID, filepath.Base(mkfs), err, out)
	}
	if err := os.Rename(tmp, img); err != nil {
		return "", fmt.Errorf("sandbox: app %s storage image: %w", spec.ComponentID, err)
	}
	return img, nil
}

// mountStorage attaches img to a free loop device that detaches itself when
// unmounted, and mounts it on dir. Called by the compartment's init inside
// its private mount namespace, so the mount lives and dies with the app.
func mountStorage(img, dir string) error {
	// Mounting one ext4 image twice corrupts it: refuse while another
	// instance of the app (say, one orphaned by an agent crash) runs. The
	// kernel may detach the previous instance's loop device a moment after
	// that instance exited, so wait a little first.
	for i := 0; ; i++ {
		dev := attachedTo(img)
		if dev == "" {
			break
		}
		if i == 20 {
			return fmt.Errorf("storage image %s is in use (attached to %s): is the app already running?", img, dev)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer ctl.Close()
	f, err := os.OpenFile(img, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	for range 8 { // another process may take the free device first
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := "/dev/loop" + strconv.Itoa(n)
		loop, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			loop.Close()
			continue
		}
		if err != nil {
			loop.Close()
			return fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
		}
		err = unix.Mount(dev, dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
		loop.Close() // the mount holds the device now; with none, autoclear frees it
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
		}
		return nil
	}
	return errors.New("no free loop device")
}

// attachedTo returns the loop device img is attached to, or "".
func attachedTo(img string) string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSpace(string(b)) == img {
			return "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(f)))
		}
	}
	return ""
}
