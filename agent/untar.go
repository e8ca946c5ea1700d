package agent

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Limits of an app payload unpacked into its slot.
const (
	maxAppBytes   = 1 << 30 // all regular files together
	maxAppEntries = 10000
)

// untar unpacks an app payload (docs/image-package.md: a reproducible tar
// of the app directory) into dir, which must not exist yet. It accepts
// only directories, regular files and relative symbolic links that stay
// inside dir; no device files, FIFOs or hard links, no absolute names or
// "..", no entry twice, and at most maxBytes of file content. Permission
// bits are kept without setuid, setgid and sticky. On any error dir is
// removed.
func untar(r io.Reader, dir string, maxBytes int64) (err error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("untar: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	tr := tar.NewReader(r)
	seen := map[string]bool{}
	var total int64
	for n := 0; ; n++ {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("untar: %w", err)
		}
		if n >= maxAppEntries {
			return fmt.Errorf("untar: more than %d entries", maxAppEntries)
		}
		name, err := cleanEntryName(h.Name)
		if err != nil {
			return fmt.Errorf("untar: %w", err)
		}
		if seen[name] {
			return fmt.Errorf("untar: %q appears twice", h.Name)
		}
		seen[name] = true
		// Every parent must be a directory made by this archive (or dir
		// itself), so nothing is written through a symbolic link.
		if parent := path.Dir(name); parent != "." {
			if fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(parent))); err != nil || !fi.IsDir() {
				return fmt.Errorf("untar: %q: its directory %q is not an earlier directory entry", h.Name, parent)
			}
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		mode := os.FileMode(h.Mode) & os.ModePerm
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.Mkdir(target, mode|0o700); err != nil {
				return fmt.Errorf("untar: %w", err)
			}
		case tar.TypeReg:
			if h.Size < 0 || h.Size > maxBytes-total {
				return fmt.Errorf("untar: the files are larger than %d bytes", maxBytes)
			}
			total += h.Size
			if err := writeEntry(target, tr, h.Size, mode); err != nil {
				return fmt.Errorf("untar: %q: %w", h.Name, err)
			}
		case tar.TypeSymlink:
			if err := checkLink(name, h.Linkname); err != nil {
				return fmt.Errorf("untar: %w", err)
			}
			if err := os.Symlink(h.Linkname, target); err != nil {
				return fmt.Errorf("untar: %w", err)
			}
		default:
			return fmt.Errorf("untar: %q is of type %q; an app holds only directories, regular files and symbolic links", h.Name, h.Typeflag)
		}
	}
}

// cleanEntryName checks a tar entry name and returns it without a trailing
// slash.
func cleanEntryName(name string) (string, error) {
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "" || n == ".":
		return "", fmt.Errorf("entry %q has no name", name)
	case strings.HasPrefix(n, "/"):
		return "", fmt.Errorf("entry %q is absolute", name)
	case strings.ContainsRune(n, 0) || strings.Contains(n, "\\"):
		return "", fmt.Errorf("entry %q has a NUL or backslash", name)
	case path.Clean(n) != n:
		return "", fmt.Errorf("entry %q is not a clean path", name)
	case n == ".." || strings.HasPrefix(n, "../"):
		return "", fmt.Errorf("entry %q leaves the app directory", name)
	}
	return n, nil
}

// checkLink refuses a symbolic link that is absolute or resolves outside
// the app directory.
func checkLink(name, link string) error {
	if link == "" || strings.HasPrefix(link, "/") || strings.ContainsRune(link, 0) {
		return fmt.Errorf("symbolic link %q -> %q must be relative", name, link)
	}
	resolved := path.Clean(path.Join(path.Dir(name), link))
	if resolved == ".." || strings.HasPrefix(resolved, "../") {
		return fmt.Errorf("symbolic link %q -> %q leaves the app directory", name, link)
	}
	return nil
}

func writeEntry(target string, r io.Reader, size int64, mode os.FileMode) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.CopyN(f, r, size); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(target, mode) // past the umask
}
