package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/metrics"
)

// serverClient is how every command talks to the running hacheck server: one place for its
// address, how long a question may take, how large an answer may be and how a failure reads.
// The answers are decoded into the server's own types (lb.Snapshot, metrics.RecentAnswer).
type serverClient struct {
	port    int
	timeout time.Duration // of one question
}

// questionTimeout bounds one question: the server answers from memory.
const questionTimeout = 2 * time.Second

// Answers larger than these are not what a hacheck server sends (its /lb and /recent are
// bounded far below): reading stops there and the question fails.
const (
	maxLBAnswer     = 8 << 20
	maxRecentAnswer = 32 << 20
)

func newServerClient(port int) serverClient {
	return serverClient{port: port, timeout: questionTimeout}
}

// unreachableError: the running server could not be asked, or what answered is no hacheck
// server that knows the question.
type unreachableError struct {
	port int
	err  error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("no hacheck server answers on port %d (%v)", e.port, e.err)
}

func (e *unreachableError) Unwrap() error { return e.err }

// lb is what the load balancers reported about service (and only the instance port, when not
// 0): GET /lb/<service>.
func (c serverClient) lb(ctx context.Context, service string, port int) (lb.Snapshot, error) {
	q := url.Values{}
	if port != 0 {
		q.Set("port", strconv.Itoa(port))
	}
	var s lb.Snapshot
	_, err := c.get(ctx, "/lb/"+service, q, maxLBAnswer, &s)
	return s, err
}

// recent is the services checked within threshold seconds (GET /recent), and the answer as
// the server wrote it.
func (c serverClient) recent(ctx context.Context, threshold int) (metrics.RecentAnswer, []byte, error) {
	var r metrics.RecentAnswer
	body, err := c.get(ctx, "/recent", url.Values{"threshold": {strconv.Itoa(threshold)}}, maxRecentAnswer, &r)
	return r, body, err
}

// get asks the server path?query, reads at most limit bytes of the answer and decodes it into
// out. A server that cannot be reached, or a 404 that is not hacheck's JSON, is an
// *unreachableError; ctx ending (not the question's own timeout) is ctx.Err().
func (c serverClient) get(ctx context.Context, path string, query url.Values, limit int64, out any) ([]byte, error) {
	u := url.URL{Scheme: "http", Host: "localhost:" + strconv.Itoa(c.port), Path: path, RawQuery: query.Encode()}
	qctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(qctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, &unreachableError{c.port, err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", u.String(), err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %s: the answer is over %d bytes", u.String(), limit)
	}
	if resp.StatusCode == http.StatusNotFound && !json.Valid(body) {
		return nil, &unreachableError{c.port, fmt.Errorf("GET %s: %s: not a hacheck that knows it", u.Path, resp.Status)}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", u.String(), resp.Status, oneLine(string(body)))
	}
	if err := json.Unmarshal(body, out); err != nil {
		return nil, fmt.Errorf("decode %s: %w", u.String(), err)
	}
	return body, nil
}
