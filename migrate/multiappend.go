package migrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/failpoint"
	"mailferry/internal/imapconn"
)

// maxMultiBytes bounds the bytes of one MULTIAPPEND batch (by the sizes
// the source listed): the server holds the whole batch in one transaction,
// and a dropped connection costs the whole batch again.
const maxMultiBytes = 16 << 20

// multi reports whether batches go to the target as MULTIAPPEND commands:
// when it offers MULTIAPPEND and UIDPLUS (whose APPENDUID names the copy
// of each message), unless Options.NoMultiAppend.
func (w *worker) multi() bool {
	f := w.dst.Features
	return f.MultiAppend && f.UIDPlus && !w.run.opts.NoMultiAppend
}

// batchLen is how many of pending go into the next batch: at most
// BatchMessages, and, for MULTIAPPEND, at most maxMultiBytes (at least one
// message) and the split bound after a refusal.
func (w *worker) batchLen(fc *folderCopy, pending []*message) int {
	n := min(len(pending), w.run.opts.BatchMessages)
	if !w.multi() {
		return n
	}
	if fc.split > 0 {
		n = min(n, fc.split)
	}
	var bytes int64
	for i, msg := range pending[:n] {
		bytes += msg.size
		if i > 0 && bytes > maxMultiBytes {
			return i
		}
	}
	return n
}

// appendMulti streams the batch's bodies from the source into one
// MULTIAPPEND (RFC 3502), hashing the exact bytes on the way. The target
// stores the batch as one transaction, so the ledger sees the batch whole
// or not at all:
//
//   - the command was not sent to its end (the source broke mid-batch,
//     the connection dropped while it was written): the server cannot
//     have stored any of it; every message is pending again;
//   - it was sent and answered OK: each message's copy is at its UID of
//     the APPENDUID, in order;
//   - it was sent and the answer was lost: every message is a lost send
//     (statusUnknown, looked for by content like a lost single APPEND:
//     either all of them are found, or none);
//   - it was refused (NO): nothing was stored. A batch of several is
//     tried again in halves (fc.split), so that one bad message ends up
//     alone and fails with the server's reason while the rest are copied.
func (w *worker) appendMulti(ctx context.Context, fc *folderCopy, batch []*message, uids imap.UIDSet) error {
	srcStream, dstStream, err := w.beginPair(ctx)
	if err != nil {
		return err
	}
	ma, err := dstStream.MultiAppend(fc.m.Target)
	if err != nil {
		srcStream.End(nil)
		dstStream.End(nil)
		return err
	}
	var order []*message
	err = w.streamBatch(ctx, fc, srcStream, uids, func(msg *message, lit imap.LiteralReader) error {
		m, err := w.addMulti(ctx, fc, ma, msg, lit)
		if m != nil {
			order = append(order, m)
		}
		return err
	})
	srcStream.End(sideErr(imapconn.Source, err))
	if err != nil {
		// The command never ended: the server stores none of it.
		if ma.Len() > 0 {
			ma.Abort()
		}
		for _, msg := range order {
			msg.status = statusPending
		}
		dstStream.End(sideErr(imapconn.Target, err))
		return err
	}
	if err := w.fenced(); err != nil {
		// Frozen past the lease: the command must not end (stored).
		ma.Abort()
		for _, msg := range order {
			msg.status = statusPending
		}
		dstStream.End(sideErr(imapconn.Target, err))
		return err
	}
	got, _, err := ma.Send()
	if err != nil {
		err = &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, Err: err}
	}
	dstStream.End(err)
	if err == nil {
		for range order {
			failpoint.Hit("append-answered") // stored on the target, not yet recorded (counted per message)
		}
		for i, msg := range order {
			if got != nil {
				fc.ours(msg, got[i])
			} // else statusUnknown: found by the check after the batch
			w.run.emit(Event{Kind: EventMessageCopied, Folder: fc.m.Source, Messages: 1, Bytes: msg.size})
		}
		if fc.split > 0 && len(order) == fc.split {
			fc.split = min(2*fc.split, w.run.opts.BatchMessages)
		}
		w.vanished(batch)
		return nil
	}
	var ie *imap.Error
	if !errors.As(err, &ie) {
		if ma.Sent() {
			// Sent to its end, the answer lost: stored whole, or not at all.
			for _, msg := range order {
				msg.status = statusUnknown
				fc.lose(msg)
			}
		} else {
			for _, msg := range order {
				msg.status = statusPending
			}
		}
		return err
	}
	// Refused: nothing of the batch was stored.
	for _, msg := range order {
		msg.status = statusPending
	}
	d := decideAppend(err)
	switch {
	case d.Action == imapconn.Retry || d.Action == imapconn.CreateRetry:
		return err
	case len(order) > 1:
		fc.split = max(1, len(order)/2)
		return nil
	case len(order) == 1:
		msg := order[0]
		if (d.Action == imapconn.FailMessage || d.Action == imapconn.Exists || d.Action == imapconn.FailMailbox) && w.fallBack(fc, msg, ie) {
			return nil // again, with fewer flags
		}
		msg.status, msg.reason = statusFailed, fmt.Sprintf("append refused by the target: %v", ie)
	}
	w.vanished(batch)
	return nil
}

// decideAppend is imapconn.Decide for an APPEND's answer: there [LIMIT]
// is a limit of the message (Dovecot: "Mail size is larger than the
// maximum size allowed"; RFC 5530: too many flags), not of the server's
// load, so it fails the message instead of waiting to try again.
func decideAppend(err error) imapconn.Decision {
	d := imapconn.Decide(err)
	var ie *imap.Error
	if errors.As(err, &ie) && ie.Code == imap.ResponseCodeLimit {
		d.Action = imapconn.FailMessage
	}
	return d
}

// vanished fails the batch's messages the source no longer sent: expunged
// on the source since the listing.
func (w *worker) vanished(batch []*message) {
	for _, msg := range batch {
		if msg.status == statusPending && !msg.fetched {
			msg.status, msg.reason = statusFailed, "vanished from the source during the copy"
		}
	}
}

// addMulti writes one body into the MULTIAPPEND. It returns msg when the
// message went into the command.
func (w *worker) addMulti(ctx context.Context, fc *folderCopy, ma *imapconn.MultiAppend, msg *message, lit imap.LiteralReader) (*message, error) {
	// A message over APPENDLIMIT would make the server refuse the whole
	// batch: it fails here, unsent.
	size, ok := w.admit(msg, lit, w.dst.Features.AppendLimit)
	if !ok {
		return nil, nil
	}
	dst, err := ma.Add(size, w.sendFlags(fc, msg), msg.date)
	if err != nil {
		return nil, &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: err}
	}
	msg.status = statusUnknown
	if sourceBroke, err := w.copyBody(ctx, msg, lit, size, dst); err != nil {
		if sourceBroke {
			return msg, fmt.Errorf("fetch uid %d from %q on the source: %w: %w", msg.uid, fc.m.Source, errLiteralBroken, err)
		}
		return msg, &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: err}
	}
	return msg, nil
}
