package pgtest

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// tarOptions configure extractTar.
type tarOptions struct {
	// gzip: the stream is gzip-compressed.
	gzip bool
	// name maps an entry's name to its path below the destination; false
	// skips the entry. nil keeps every name.
	name func(string) (string, bool)
	// cred, when set, owns everything extracted.
	cred *syscall.Credential
	// publicRead makes files and directories readable (and directories
	// searchable) by everyone and writable only by the owner; otherwise
	// the archive's permission bits are kept.
	publicRead bool
}

// extractTar extracts the tar stream r below dest, which must exist. It
// accepts directories, regular files and symbolic links; it rejects names
// and hard links that would leave dest. A stream that ends at an entry
// boundary without the end-of-archive blocks, as PostgreSQL before 15 sends
// a base backup, is complete. It reads r to its end.
func extractTar(r io.Reader, dest string, opts tarOptions) (err error) {
	defer func() {
		if err == nil {
			_, err = io.Copy(io.Discard, r) // trailing padding
		}
	}()
	if opts.gzip {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("gunzip: %w", err)
		}
		defer zr.Close()
		r = zr
	}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		if opts.name != nil {
			var ok bool
			if name, ok = opts.name(name); !ok {
				continue
			}
		}
		name = strings.TrimSuffix(name, "/")
		if name == "" || name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("tar entry %q leaves the destination", hdr.Name)
		}
		path := filepath.Join(dest, name)
		if err := makeParents(dest, filepath.Dir(name), opts); err != nil {
			return err
		}
		perm := hdr.FileInfo().Mode().Perm()
		switch hdr.Typeflag {
		case tar.TypeDir:
			if opts.publicRead {
				perm = 0o755
			}
			if err := os.Mkdir(path, perm); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			if err := os.Chmod(path, perm); err != nil {
				return err
			}
		case tar.TypeReg:
			if opts.publicRead {
				perm = perm&^0o022 | 0o444
			}
			if err := writeTarFile(path, tr, perm); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := replaceSymlink(hdr.Linkname, path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("tar entry %q: unsupported type %q", hdr.Name, hdr.Typeflag)
		}
		if err := chownTo(path, opts.cred); err != nil {
			return err
		}
	}
}

// makeParents creates the directories of rel below dest that are missing.
func makeParents(dest, rel string, opts tarOptions) error {
	if rel == "." {
		return nil
	}
	path := filepath.Join(dest, rel)
	if fi, err := os.Lstat(path); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("tar: %s is not a directory", path)
		}
		return nil
	}
	if err := makeParents(dest, filepath.Dir(rel), opts); err != nil {
		return err
	}
	perm := os.FileMode(0o700)
	if opts.publicRead {
		perm = 0o755
	}
	if err := os.Mkdir(path, perm); err != nil {
		return err
	}
	if err := os.Chmod(path, perm); err != nil {
		return err
	}
	return chownTo(path, opts.cred)
}

func writeTarFile(path string, r io.Reader, perm os.FileMode) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(path); err != nil { // never write through a link
			return err
		}
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(path, perm)
}
