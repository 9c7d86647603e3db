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

// ErrLeaseExpired is returned (wrapped) by CheckHeld once the lease's
// expiry has passed without a renewal: another process may own the
// migration by now. It wraps ErrLeaseLost.
var ErrLeaseExpired = fmt.Errorf("lease expired before it was renewed (this process stalled?): %w", ErrLeaseLost)

// CheckHeld is the fence of writes that do not go through the state (an
// APPEND to a mail server): it fails with ErrLeaseExpired once the lease's
// last known expiry has passed, by this process's clock, so a process that
// was frozen past its lease (SIGSTOP, a VM paused) sends nothing more when
// it runs again, even before a renewal finds the lease taken. It does no
// I/O; call it before each write.
func (l *Lease) CheckHeld() error {
	if l.s.nowUTC().Before(l.Expires()) {
		return nil
	}
	return fmt.Errorf("migration %s: %w", l.Migration.Key, ErrLeaseExpired)
}
