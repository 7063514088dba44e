package check

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

const (
	// maxStatsCSV bounds how much of a stats page is read looking for one backend's row. HAProxy
	// writes a row of a few hundred bytes a frontend, backend and server, so this is room for
	// tens of thousands of servers; the reading stops at the row it looks for.
	maxStatsCSV = 16 << 20
	// maxStatsLine bounds one row, the only part of the page held in memory at once.
	maxStatsLine = 64 << 10
	// statsStatusColumn is where HAProxy's CSV has the status when the page has no header row.
	statsStatusColumn = 17
)

// haproxyChecker is the "haproxy" protocol: read the CSV stats of the HAProxy whose stats
// listener is 127.0.0.1:<port> and report the status of the backend named by the service.
type haproxyChecker struct {
	userAgent string
	client    *http.Client
}

func newHAProxyChecker(opts Options) *haproxyChecker {
	return &haproxyChecker{
		userAgent: "hacheck/" + opts.Version,
		client: &http.Client{
			Transport: withinCheck{newLocalTransport()},
			// The stats page is at /; a redirect leads somewhere that is not it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// Check GETs /;csv and answers 200 "<service> is UP" when the row of the backend named
// <service> (svname BACKEND) has status UP; 500 "<service> is <status>" for any other status,
// 500 "<service> is not found" without such a row, 500 when the stats page answers other than
// 200 or is not CSV; 503 "<error> after <s>s" when HAProxy cannot be reached or does not
// answer in time. Check never returns an error.
func (c *haproxyChecker) Check(ctx context.Context, t Target) (Result, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+localAddr(t.Port)+"/;csv", nil)
	if err != nil {
		return Result{}, fmt.Errorf("building haproxy stats request for %s: %w", t.Service, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	start := time.Now()
	resp, err := c.client.Do(req)
	if err != nil {
		return failure(ctx, asCheckDeadline(ctx, err), time.Since(start)), nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Result{Code: 500, Message: "HAProxy stats answered " + oneLine(resp.Status), Outcome: OutcomeUpstreamFail}, nil
	}
	status, found, err := backendStatus(resp.Body, t.Service)
	var statsErr *statsError
	var tooLong *tooLongError
	switch {
	case errors.As(err, &statsErr), errors.As(err, &tooLong):
		return Result{Code: 500, Message: "HAProxy stats: " + err.Error(), Outcome: OutcomeUpstreamFail}, nil
	case err != nil:
		return failure(ctx, fmt.Errorf("reading HAProxy stats: %w", asCheckDeadline(ctx, err)), time.Since(start)), nil
	case !found:
		return Result{Code: 500, Message: t.Service + " is not found", Outcome: OutcomeUpstreamFail}, nil
	case status == "UP":
		return Result{Code: 200, Message: t.Service + " is UP", Outcome: OutcomeOK}, nil
	default:
		return Result{Code: 500, Message: t.Service + " is " + oneLine(status), Outcome: OutcomeUpstreamFail}, nil
	}
}

// statsError is a stats page that is not HAProxy's CSV.
type statsError struct{ msg string }

func (e *statsError) Error() string { return e.msg }

// backendStatus reads HAProxy's CSV stats from r up to the row of backend's BACKEND and
// returns its status column (found by the header row's "status", else column 18). Rows that
// do not parse or are too short are skipped, as the Python hacheck did; a row longer than
// maxStatsLine is an error, and so is a page beyond maxStatsCSV.
func backendStatus(r io.Reader, backend string) (status string, found bool, err error) {
	br := bufio.NewReaderSize(newCappedReader(r, maxStatsCSV), maxStatsLine)
	statusCol := statsStatusColumn
	// Only a row that can be the backend's is parsed as CSV: HAProxy quotes a name only when
	// it holds a comma or a quote, so every other name starts its row as written.
	rowPrefix := []byte(backend + ",BACKEND,")
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return "", false, &statsError{fmt.Sprintf("a row longer than %d bytes", maxStatsLine)}
		}
		line = bytes.TrimRight(line, "\r\n")
		if first && bytes.HasPrefix(line, []byte("# ")) {
			if fields, perr := parseCSVRow(line[2:]); perr == nil {
				for i, name := range fields {
					if name == "status" {
						statusCol = i
						break
					}
				}
			}
		} else if bytes.HasPrefix(line, rowPrefix) || len(line) > 0 && line[0] == '"' && bytes.Contains(line, []byte(",BACKEND,")) {
			fields, perr := parseCSVRow(line)
			if perr == nil && len(fields) > max(statusCol, 1) && fields[1] == "BACKEND" && fields[0] == backend {
				return fields[statusCol], true, nil
			}
		}
		if errors.Is(err, io.EOF) {
			return "", false, nil
		}
		if err != nil {
			return "", false, err
		}
	}
}

// parseCSVRow splits one CSV row; HAProxy quotes a field that holds a comma or a quote.
func parseCSVRow(line []byte) ([]string, error) {
	r := csv.NewReader(bytes.NewReader(line))
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	r.ReuseRecord = true
	return r.Read()
}
