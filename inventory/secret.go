package inventory

import (
	"encoding/pem"
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

// CheckSecrets checks what the clusters reference, without reading any
// secret: every password_file and credentials_file exists and is readable
// by its owner only, every password_env variable is set, every ca_file
// holds a PEM certificate. Each problem names the inventory file, the
// line and the field; nil means none.
func (inv *Inventory) CheckSecrets() Errors {
	var errs Errors
	for i := range inv.Clusters {
		c := &inv.Clusters[i]
		problem := func(field, msg string) {
			errs = append(errs, &FieldError{File: inv.Path, Line: c.lines[field],
				Field: fmt.Sprintf("clusters[%s].%s", c.Name, field), Msg: msg})
		}
		for _, f := range []struct{ field, path string }{
			{"auth.password_file", c.Auth.PasswordFile},
			{"auth.credentials_file", c.Auth.CredentialsFile},
		} {
			if f.path == "" {
				continue
			}
			if err := CheckSecretFile(f.path); err != nil {
				problem(f.field, err.Error())
			}
		}
		if env := c.Auth.PasswordEnv; env != "" && os.Getenv(env) == "" {
			problem("auth.password_env", fmt.Sprintf("environment variable $%s is not set", env))
		}
		if c.CAFile != "" {
			if err := checkCAFile(c.CAFile); err != nil {
				problem("ca_file", err.Error())
			}
		}
	}
	return errs
}

func checkCAFile(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return fmt.Errorf("%s holds no PEM certificate", path)
		}
		if b.Type == "CERTIFICATE" {
			return nil
		}
	}
}
