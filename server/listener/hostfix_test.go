package listener

import "testing"

func FuzzAddHostIfMissing(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "GET / HTTP/1.0\r\n\r\n", "\r\n\r\n", "GET / HTTP/1.1\n\n", "x",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headerEnd(data)
		if end < 0 {
			return
		}
		out := addHostIfMissing(data, end)
		if len(out) < len(data) {
			t.Fatalf("bytes lost: %q -> %q", data, out)
		}
		if string(out[len(out)-(len(data)-end):]) != string(data[end:]) {
			t.Fatalf("body changed: %q -> %q", data, out)
		}
	})
}
