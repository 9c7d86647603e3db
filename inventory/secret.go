package inventory

import (
	"fmt"
	"os"
	"path/filepath"
)

// CheckSecretFile checks that a file holding a secret exists, is a regular
// file and is readable by its owner only (mode 0600 or stricter). It does
// not read the file. The error names the file, never its content.
func CheckSecretFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: a secret must be readable by its owner only (chmod 600 %s)", path, perm, filepath.Base(path))
	}
	return nil
}
