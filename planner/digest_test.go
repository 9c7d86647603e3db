package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"

	"mailferry/inventory"
)

// digestReference is InventoryDigest as first written (every line built
// with fmt and sorted as strings): the fast path must give the same digest,
// so that plans made before it still match their inventories.
func digestReference(inv *inventory.Inventory) string {
	var b strings.Builder
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	clusters := make([]string, 0, len(inv.Clusters))
	for _, c := range inv.Clusters {
		tags := make([]string, 0, len(c.Tags))
		for k, v := range c.Tags {
			tags = append(tags, strconv.Quote(k)+"="+strconv.Quote(v))
		}
		slices.Sort(tags)
		clusters = append(clusters, fmt.Sprintf("cluster %q health %q bytes %d load %s tags %s\n",
			c.Name, c.Health, c.Capacity.Bytes, f(c.Capacity.Load), strings.Join(tags, ",")))
	}
	slices.Sort(clusters)
	mailboxes := make([]string, 0, len(inv.Mailboxes))
	for _, m := range inv.Mailboxes {
		mailboxes = append(mailboxes, fmt.Sprintf("mailbox %q cluster %q bytes %d load %s messages %d pinned %t\n",
			m.Name, m.Cluster, m.Bytes, f(m.Load), m.Messages, m.Pinned))
	}
	slices.Sort(mailboxes)
	b.WriteString("mailferry inventory digest 1\n")
	for _, s := range append(clusters, mailboxes...) {
		b.WriteString(s)
	}
	sum := sha256.Sum256([]byte(b.String()))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func TestDigestMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	inv := genInventory(rng, shape{clusters: 4, perCluster: [2]int{50, 100}, utilRange: [2]float64{0.1, 0.9}, regions: 2, capacityRange: [2]float64{1, 3}})
	check := func(what string) {
		t.Helper()
		if got, want := InventoryDigest(inv), digestReference(inv); got != want {
			t.Errorf("%s: digest %s, reference %s", what, got, want)
		}
	}
	check("sorted names")
	rng.Shuffle(len(inv.Mailboxes), func(i, j int) { inv.Mailboxes[i], inv.Mailboxes[j] = inv.Mailboxes[j], inv.Mailboxes[i] })
	check("shuffled")
	inv.Mailboxes[0].Name = "u000001@example.org x" // a prefix of another name plus a space
	inv.Mailboxes[1].Name = "u000001@example.org"
	check("a space")
	inv.Mailboxes[3].Name = `x "quoted" é`
	check("quotes and UTF-8")
	if d := InventoryDigest(small()); d != digestReference(small()) {
		t.Errorf("small: %s", d)
	}
}
