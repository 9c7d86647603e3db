package state

import (
	"context"
	"fmt"
)

// Superseded reports whether another holder has acquired the migration
// since this lease was taken (its epoch grew): the lease is lost for good,
// and whoever took it over owns the migration's work. A lease merely
// released or expired, but not taken by anyone, is not superseded. It
// reads committed state only.
func (l *Lease) Superseded(ctx context.Context) (bool, error) {
	var epoch int64
	if err := l.s.db.QueryRowContext(ctx, l.s.q(`SELECT epoch FROM mailferry_migration WHERE id = ?`), l.Migration.ID).Scan(&epoch); err != nil {
		return false, fmt.Errorf("read the epoch of migration %s: %w", l.Migration.Key, err)
	}
	return epoch > l.Epoch, nil
}
