package faultproxy

import "strings"

// ReplyText is ReplyUnavailable with a reply of the test's choosing: the
// next n (n < 0: all) client commands whose first line contains pattern
// are answered by the proxy with "<tag> "+text+"\r\n", such as
// "NO Server busy, try again in 1 seconds" (a busy reply without a
// response code). Literals are handled as ReplyUnavailable handles them.
// Unavailable counts these replies too. A later ReplyUnavailable or
// ReplyText replaces it.
func (p *Proxy) ReplyText(pattern []byte, n int, text string) {
	text = " " + strings.TrimSpace(text) + "\r\n"
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reject, p.rejectLeft, p.rejectText = append([]byte(nil), pattern...), n, []byte(text)
}
