package inventory

import (
	"strings"
	"testing"
)

// A cluster URL that does not parse and holds a password is quoted with the
// password masked.
func TestMalformedURLHidesPassword(t *testing.T) {
	for _, u := range []string{"imaps://admin:hunter2@a.example:bad", "imaps://admin:hunter2%zz@a.example", "imaps://admin:hunter2@a.example"} {
		_, err := Parse("inv.yaml", []byte("clusters:"+strings.Replace(goodCluster, "imaps://a.example:993", u, 1)))
		if err == nil || !strings.Contains(err.Error(), "inv.yaml:3: clusters[a].url:") {
			t.Fatalf("%s: err = %v", u, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}
