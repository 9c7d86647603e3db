package imapconn

import (
	"bufio"
	"bytes"
	"io"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// respFilter sits between the server and the IMAP library (v2.0.0-beta.8)
// and removes the two things that make that library close the whole
// connection, so that a server quirk costs at most one response or one
// folder instead of the mailbox:
//
//   - untagged responses whose keyword the library does not handle
//     ("* XSTRANGE 1 2", "* BANANA"): RFC 3501 section 2.2.2 says a client
//     must ignore them, the library instead fails with "unsupported
//     response type" and closes;
//   - LIST and STATUS responses naming a mailbox that is not valid
//     modified UTF-7: the library fails the whole LIST without naming the
//     folder. The filter drops that one line and records the raw name
//     (watchConn.badName), so the caller can fail that folder alone.
//
// It is hand-written because it has to be a stream filter beneath the
// library (which offers no hook for unknown responses), and because it must
// cost nothing on the hot path: message bodies are literals, passed through
// by count without looking at a byte (no copy when the caller's buffer is
// large, one memcpy otherwise); only the start of each response is
// examined, and only LIST and STATUS lines (small) are held whole. No IMAP
// parser package offers that. It never changes a byte of what it passes.
type respFilter struct {
	br *bufio.Reader
	w  *watchConn

	out    []byte // to return before reading more (may alias br's buffer)
	err    error  // from the server, returned once out is empty
	lit    int64  // literal bytes still to pass (or drop, or hold)
	inLine bool   // inside a response whose start was classified
	drop   bool   // the current response is dropped
	hold   bool   // the current response is held whole (LIST, STATUS)
	own    bool   // and it is for the command written beneath the library
	held   []byte
	tail   []byte // the current segment's last bytes, for the literal marker
}

// maxHold bounds a held LIST or STATUS response; a longer one is passed on
// unexamined.
const maxHold = 64 << 10

func newRespFilter(r io.Reader, w *watchConn) *respFilter {
	return &respFilter{br: bufio.NewReaderSize(r, 32<<10), w: w}
}

// knownResponses are the untagged response keywords that go-imap
// v2.0.0-beta.8 handles (imapclient.Client.readResponseData); it fails on
// any other.
var knownResponses = map[string]bool{
	"OK": true, "PREAUTH": true, "NO": true, "BAD": true, "BYE": true,
	"ID": true, "CAPABILITY": true, "ENABLED": true, "NAMESPACE": true,
	"FLAGS": true, "EXISTS": true, "RECENT": true, "LIST": true,
	"STATUS": true, "FETCH": true, "EXPUNGE": true, "SEARCH": true,
	"ESEARCH": true, "SORT": true, "THREAD": true, "METADATA": true,
	"QUOTA": true, "QUOTAROOT": true, "MYRIGHTS": true, "ACL": true,
}

func (f *respFilter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(f.out) > 0 {
			n := copy(p, f.out)
			f.out = f.out[n:]
			return n, nil
		}
		if f.err != nil {
			return 0, f.err
		}
		if f.lit > 0 {
			// The caller's buffer is scratch space (io.Reader) for
			// dropped and held literals too.
			q := p
			if int64(len(q)) > f.lit {
				q = q[:f.lit]
			}
			n, err := f.br.Read(q)
			f.lit -= int64(n)
			f.err = err
			switch {
			case f.drop:
			case f.hold:
				f.held = append(f.held, q[:n]...)
				f.overflow()
			case n > 0:
				return n, nil
			}
			if f.lit == 0 {
				f.tail = f.tail[:0]
			}
			continue
		}
		seg, err := f.br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			f.err = err
			if len(seg) == 0 {
				continue
			}
		}
		f.segment(seg, err == nil)
	}
}

// segment handles bytes of a response outside literals; complete says seg
// ends with LF.
func (f *respFilter) segment(seg []byte, complete bool) {
	if !f.inLine {
		f.classify(seg)
		f.inLine = true
	}
	f.tail = appendTail(f.tail, seg)
	switch {
	case f.drop:
	case f.hold:
		f.held = append(f.held, seg...)
		f.overflow()
	default:
		f.out = seg
	}
	if !complete {
		return
	}
	if n, _, ok := literalMarker(f.tail); ok {
		f.lit = n
	} else {
		f.endResponse()
	}
	f.tail = f.tail[:0]
}

// overflow gives up holding a response too long to be a folder's.
func (f *respFilter) overflow() {
	if f.own && len(f.held) > maxHold {
		f.held = f.held[:maxHold] // a status line this long is junk past here
		return
	}
	if len(f.held) > maxHold {
		f.out, f.held, f.hold = f.held, nil, false
	}
}

func (f *respFilter) endResponse() {
	if f.own {
		f.w.deliverOwn(f.held)
		f.held = nil
		f.inLine, f.drop, f.hold, f.own = false, false, false, false
		return
	}
	if f.hold {
		if name, ok := heldMailbox(f.held); ok && !validModifiedUTF7(name) {
			f.w.badName(name)
		} else {
			f.out = f.held
		}
		f.held = nil
	}
	f.inLine, f.drop, f.hold = false, false, false
}

// classify looks at the start of a response.
func (f *respFilter) classify(seg []byte) {
	tag, rest := token(seg)
	switch {
	case len(seg) > 0 && seg[0] == '+':
		f.w.onLine("+")
		f.own = f.w.ownFor("+")
		f.hold = f.own
		return
	case tag != "*":
		f.w.onLine(tag)
		f.own = f.w.ownFor(tag)
		f.hold = f.own
		return
	}
	kw, rest := token(rest)
	if isNumber(kw) {
		kw, _ = token(rest)
	}
	kw = upper(kw)
	switch {
	case kw == "LIST" || kw == "STATUS":
		f.hold = true
	case !knownResponses[kw]:
		f.drop = true
		return // as if it had never come (it is not the greeting either)
	}
	f.w.onLine("*")
}

// token returns the bytes before the first SP, CR or LF (or "[" and "(",
// which may follow a keyword directly), and what follows the SP.
func token(b []byte) (string, []byte) {
	for i, c := range b {
		switch c {
		case ' ':
			return string(b[:i]), b[i+1:]
		case '\r', '\n', '[', '(':
			return string(b[:i]), nil
		}
	}
	return string(b), nil
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func upper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}

// heldMailbox returns the raw mailbox name of a whole LIST or STATUS
// response ("* LIST (attrs) delim name ...", "* STATUS name (...)"), with
// literal contents inline after their "{n}\r\n".
func heldMailbox(b []byte) (string, bool) {
	_, b = token(b) // "*"
	kw, b := token(b)
	if upper(kw) == "LIST" {
		if len(b) == 0 || b[0] != '(' {
			return "", false
		}
		i := bytes.IndexByte(b, ')')
		if i < 0 || i+1 >= len(b) || b[i+1] != ' ' {
			return "", false
		}
		b = b[i+2:]
		var ok bool
		if bytes.HasPrefix(b, []byte("NIL ")) || bytes.HasPrefix(b, []byte("nil ")) {
			b = b[4:]
		} else if _, b, ok = quoted(b); !ok || len(b) == 0 || b[0] != ' ' {
			return "", false
		} else {
			b = b[1:]
		}
	}
	return astring(b)
}

// astring reads an atom, a quoted string or a literal.
func astring(b []byte) (string, bool) {
	if len(b) == 0 {
		return "", false
	}
	switch b[0] {
	case '"':
		s, _, ok := quoted(b)
		return s, ok
	case '{', '~':
		i := bytes.Index(b, []byte("}\r\n"))
		if i < 0 {
			return "", false
		}
		digits := bytes.TrimLeft(b[:i], "~{")
		digits = bytes.TrimRight(digits, "+")
		n, err := strconv.Atoi(string(digits))
		if err != nil || n < 0 || i+3+n > len(b) {
			return "", false
		}
		return string(b[i+3 : i+3+n]), true
	}
	for i, c := range b {
		if c == ' ' || c == '\r' || c == '\n' || c == '(' || c == ')' {
			return string(b[:i]), i > 0
		}
	}
	return string(b), true
}

// quoted reads a quoted string and returns it unescaped and what follows.
func quoted(b []byte) (string, []byte, bool) {
	if len(b) == 0 || b[0] != '"' {
		return "", b, false
	}
	var s []byte
	for i := 1; i < len(b); i++ {
		switch c := b[i]; c {
		case '\\':
			if i+1 < len(b) {
				i++
				s = append(s, b[i])
			}
		case '"':
			return string(s), b[i+1:], true
		case '\r', '\n':
			return "", b, false
		default:
			s = append(s, c)
		}
	}
	return "", b, false
}

// modifiedBase64 is the base64 alphabet of modified UTF-7 (RFC 3501
// section 5.1.3): "," instead of "/", no padding.
const modifiedBase64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,"

// validModifiedUTF7 reports whether the IMAP library would accept name as a
// mailbox name: INBOX in any case, or modified UTF-7 (raw UTF-8 allowed) —
// printable ASCII, "&-" for "&", and "&" base64 "-" runs that hold UTF-16
// of characters that are not printable ASCII, never two runs in a row.
func validModifiedUTF7(name string) bool {
	if len(name) == 5 && upper(name) == "INBOX" {
		return true
	}
	if !utf8.ValidString(name) {
		return false
	}
	shifted := false // the previous piece was a base64 run
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x20 || c == 0x7f {
			return false
		}
		if c != '&' {
			shifted = false
			continue
		}
		j := i + 1
		for j < len(name) && name[j] != '-' {
			j++
		}
		if j == len(name) {
			return false // unterminated
		}
		if j == i+1 {
			shifted = false // "&-"
			i = j
			continue
		}
		if shifted || !validBase64Run(name[i+1:j]) {
			return false
		}
		shifted = true
		i = j
	}
	return true
}

// validBase64Run checks one base64 run of modified UTF-7.
func validBase64Run(s string) bool {
	var bits, nbits uint32
	var units []uint16
	for i := 0; i < len(s); i++ {
		v := bytes.IndexByte([]byte(modifiedBase64), s[i])
		if v < 0 {
			return false
		}
		bits = bits<<6 | uint32(v)
		nbits += 6
		if nbits >= 16 {
			nbits -= 16
			units = append(units, uint16(bits>>nbits))
			bits &= 1<<nbits - 1
		}
	}
	// What is left must be fewer than 8 bits (a whole leftover byte
	// means an odd number of bytes: not UTF-16), and a single leftover
	// base64 character cannot carry a byte at all.
	if nbits >= 8 || len(s)%4 == 1 || len(units) == 0 {
		return false
	}
	for i := 0; i < len(units); i++ {
		r := rune(units[i])
		if utf16.IsSurrogate(r) {
			if i+1 == len(units) || utf16.DecodeRune(r, rune(units[i+1])) == utf8.RuneError {
				return false
			}
			i++
			continue
		}
		if 0x20 <= r && r <= 0x7e {
			return false // printable ASCII must not be encoded
		}
	}
	return true
}
