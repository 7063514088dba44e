package check

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// maxPingReply bounds a PING reply: +PONG, or an error line such as -NOAUTH.
	maxPingReply = 4 << 10
	// maxInfoReply bounds an INFO reply. A Redis's INFO is a few KiB; a sentinel's grows by a
	// line per monitored master. Anything far beyond is not a Redis talking.
	maxInfoReply = 256 << 10
)

// redisChecker is the "redis" and "sentinel" protocols (PING 127.0.0.1:<port>) and, with info
// set, "redis-info" and "sentinel-info" (INFO). Redis and Sentinel speak the same protocol;
// sentinel only changes how INFO is read (see parseInfo).
type redisChecker struct {
	dialer   net.Dialer
	info     bool
	sentinel bool
}

// Check answers PING with 200 "Sent PING, got back +PONG" when the server replies +PONG, and
// 500 quoting the reply otherwise.
//
// INFO answers 200 with every field as a JSON object when the check has no query, or no k=v
// pairs in its query string; otherwise 200 when any pair's field has that value, else 500
// naming the values found. A reply without redis_version (not a Redis) is a 500.
//
// A reply longer than the cap, or malformed, is a 500; a server that cannot be reached, hangs
// or hangs up is a 503 "<error> after <s>s". Check never returns an error.
func (c *redisChecker) Check(ctx context.Context, t Target) (Result, error) {
	cmd, limit := "PING", maxPingReply
	if c.info {
		cmd, limit = "INFO", maxInfoReply
	}
	start := time.Now()
	conn, err := dialLocal(ctx, &c.dialer, t.Port)
	if err != nil {
		return failure(ctx, err, time.Since(start)), nil
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "*1\r\n$4\r\n"+cmd+"\r\n"); err != nil {
		return failure(ctx, fmt.Errorf("sending %s: %w", cmd, err), time.Since(start)), nil
	}
	// The cap leaves room for the bulk header in front of a reply of exactly limit bytes.
	kind, payload, err := readRESP(bufio.NewReader(newCappedReader(conn, int64(limit)+32)), limit)
	var protoErr *respError
	var tooLong *tooLongError
	switch {
	case errors.As(err, &protoErr), errors.As(err, &tooLong):
		return redisFail("Sent %s, got back a bad reply: %v", cmd, err), nil
	case err != nil:
		return failure(ctx, fmt.Errorf("reading %s reply: %w", cmd, err), time.Since(start)), nil
	}

	if !c.info {
		if kind == '+' && payload == "PONG" {
			return Result{Code: 200, Message: "Sent PING, got back +PONG", Outcome: OutcomeOK}, nil
		}
		return redisFail("Sent PING, got back %s", quoteReply(string(kind)+payload)), nil
	}
	if kind != '$' {
		return redisFail("Sent INFO, got back %s", quoteReply(string(kind)+payload)), nil
	}
	info := parseInfo(payload, c.sentinel)
	if _, ok := info["redis_version"]; !ok {
		return redisFail("Sent INFO, got back no redis_version field"), nil
	}
	var pairs [][2]string
	if t.Query != "" {
		pairs = matchPairs(t.RawQuery)
	}
	if len(pairs) == 0 {
		body, err := json.Marshal(info)
		if err != nil {
			return Result{}, fmt.Errorf("encoding INFO of %s: %w", t.Service, err)
		}
		return Result{Code: 200, Message: string(body), Outcome: OutcomeOK}, nil
	}
	return matchInfo(info, pairs), nil
}

func redisFail(format string, args ...any) Result {
	return Result{Code: 500, Message: fmt.Sprintf(format, args...), Outcome: OutcomeUpstreamFail}
}

// matchInfo answers 200 for the first pair whose field has that value, else 500 naming each
// asked field's value (or its absence).
func matchInfo(info map[string]string, pairs [][2]string) Result {
	for _, p := range pairs {
		if v, ok := info[p[0]]; ok && v == p[1] {
			return Result{Code: 200, Message: oneLine(fmt.Sprintf("Match found: field %s, value %s", p[0], p[1])), Outcome: OutcomeOK}
		}
	}
	var found []string
	seen := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		if seen[p[0]] {
			continue
		}
		seen[p[0]] = true
		if v, ok := info[p[0]]; ok {
			found = append(found, p[0]+"="+v)
		} else {
			found = append(found, p[0]+" absent")
		}
	}
	return redisFail("%s", oneLine("No matching field found: "+strings.Join(found, ", ")))
}

// matchPairs returns the k=v pairs of a query string in order. As the Python hacheck's
// parse_qs did, pairs without '=', with an empty value or with bad escapes are skipped.
func matchPairs(rawQuery string) [][2]string {
	var pairs [][2]string
	for part := range strings.SplitSeq(rawQuery, "&") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			continue
		}
		key, err1 := url.QueryUnescape(k)
		value, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || key == "" || value == "" {
			continue
		}
		pairs = append(pairs, [2]string{key, value})
	}
	return pairs
}

// masterAddr finds an IPv4 ip:port, as a sentinel's INFO gives its masters' addresses
// ("master0:name=m,status=ok,address=10.0.0.1:6379,slaves=1,sentinels=3").
var masterAddr = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}:\d{1,5}\b`)

// parseInfo reads INFO's "field:value" lines. Section headers ("# Server"), blank lines and
// lines with more than one ':' are skipped, as the Python hacheck did. For a sentinel,
// redis_master is the last ip:port anywhere in the reply: with one monitored master, its
// address. It is only ever reported or compared, never connected to.
func parseInfo(data string, sentinel bool) map[string]string {
	info := make(map[string]string, 128)
	for line := range strings.SplitSeq(data, "\n") {
		line = strings.TrimSpace(line)
		if sentinel {
			if addrs := masterAddr.FindAllString(line, -1); len(addrs) > 0 {
				info["redis_master"] = addrs[len(addrs)-1]
			}
		}
		if line == "" || line[0] == '#' || strings.Count(line, ":") != 1 {
			continue
		}
		k, v, _ := strings.Cut(line, ":")
		info[k] = v
	}
	return info
}

// respError is a reply that is not RESP.
type respError struct{ msg string }

func (e *respError) Error() string { return e.msg }

// readRESP reads one RESP2 reply of the kinds a PING or INFO gets: a simple string (+), an
// error (-), an integer (:) or a bulk string ($) of at most limit bytes. It returns the kind
// byte and the payload without its framing. r must itself be bounded (see cappedReader): a
// line is read whole.
func readRESP(r *bufio.Reader, limit int) (kind byte, payload string, err error) {
	line, err := r.ReadString('\n')
	if err != nil {
		if line != "" && errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, "", err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, "", &respError{"malformed reply " + quoteReply(line)}
	}
	kind, body := line[0], line[1:len(line)-2]
	switch kind {
	case '+', '-', ':':
		return kind, body, nil
	case '$':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1:
			return 0, "", &respError{"malformed bulk length " + quoteReply(body)}
		case n == -1:
			return 0, "", &respError{"nil reply"}
		case n > limit:
			return 0, "", &tooLongError{limit: int64(limit)}
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, "", err
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return 0, "", &respError{"bulk reply not ended by CRLF"}
		}
		return kind, string(buf[:n]), nil
	default:
		return 0, "", &respError{"malformed reply " + quoteReply(line)}
	}
}
