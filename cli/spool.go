package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/hacheck/hacheck/lb"
	"github.com/hacheck/hacheck/spool"
	"github.com/hacheck/hacheck/spool/audit"
	"github.com/prometheus/common/model"
)

// The spool commands: up (haup), down (hadown), status (hastatus) and downed (hashowdowned).

// The Python commands shared one option parser: each took -r, -e and -p and ignored what it had
// no use for. These take them, hidden, and ignore them too, so that a wrapper passing the same
// options to every command runs unchanged.
type pythonReason struct {
	IgnoredReason     string `short:"r" name:"reason" hidden:"" help:"Ignored, as the Python hacheck did."`
	IgnoredExpiration string `short:"e" name:"expiration" hidden:"" help:"Ignored, as the Python hacheck did."`
}

type pythonPort struct {
	IgnoredPort string `short:"p" name:"port" hidden:"" help:"Ignored, as the Python hacheck did."`
}

type upCmd struct {
	spoolFlags
	lbFlags
	outFlags
	pythonReason
	ServicePort int      `short:"P" name:"service-port" default:"0" help:"Remove only the mark of this instance (port); 0 means the whole service."`
	JSON        bool     `name:"json" help:"Print what was done as JSON."`
	Services    []string `arg:"" name:"service" predictor:"marked" help:"Service names; 'all' is the host-wide mark."`
}

func (c *upCmd) Run(e *Env) error {
	c.apply(e)
	if err := validateTargets(c.Services, c.ServicePort); err != nil {
		return err
	}
	store := c.store(e)
	type result struct {
		Service string `json:"service"`
		Port    int    `json:"port"`
		Removed bool   `json:"removed"`
	}
	var results []result
	for _, svc := range c.Services {
		removed, err := store.Up(svc, c.ServicePort)
		if err != nil {
			return err
		}
		if removed {
			logChange(e, audit.Change{Action: audit.ActionUp, Service: svc, Port: c.ServicePort})
		}
		results = append(results, result{svc, c.ServicePort, removed})
	}
	written := time.Now()
	if c.JSON {
		if err := json.NewEncoder(e.Stdout).Encode(results); err != nil {
			return err
		}
	}
	if c.Wait {
		return waitFor(e, c.lbFlags, c.Services, c.ServicePort, lb.Up, false, written)
	}
	return nil
}

type downCmd struct {
	spoolFlags
	lbFlags
	outFlags
	Sessions bool `help:"With --wait, also wait until the load balancers report no current sessions on the server."`
	guardFlags
	Drain          bool      `help:"Drain instead: health checks answer 404 (NOLB with http-check disable-on-404: sessions finish, no new ones), agents 'drain'."`
	ServicePort    int       `short:"P" name:"service-port" default:"0" help:"Mark only this instance (port) down; 0 means the whole service."`
	Reason         string    `short:"r" help:"Why the service is down; shown to HAProxy and in /metrics. Default: the user running the command."`
	Expiration     *string   `short:"e" xor:"expiry" placeholder:"UNIXTIME" help:"Unix time (seconds, a fraction allowed) at which the mark stops counting."`
	For            string    `name:"for" xor:"expiry" placeholder:"DURATION" help:"Mark down for this long, e.g. 30m, 2h, 1d12h, 1w."`
	JSON           bool      `name:"json" help:"Print the written marks as JSON."`
	NonhumansFile  string    `name:"nonhumans-file" default:"/etc/nonhumans" hidden:"" help:"Accounts that must give a --reason."`
	Services       []string  `arg:"" name:"service" help:"Service names; 'all' marks every service on this host down."`
	expirationTime time.Time `kong:"-"`
}

func (c *downCmd) Run(e *Env) error {
	c.apply(e)
	if err := validateTargets(c.Services, c.ServicePort); err != nil {
		return err
	}
	now := e.Now()
	switch {
	case c.For != "":
		d, err := parseFriendlyDuration(c.For)
		if err != nil {
			return usageErrorf("--for %q: %v", c.For, err)
		}
		c.expirationTime = now.Add(d)
	case c.Expiration != nil:
		t, err := parseExpirationFlag(*c.Expiration, now)
		if err != nil {
			return err
		}
		c.expirationTime = t
	}
	reason := c.Reason
	if reason == "" {
		var err error
		if reason, err = defaultReason(e, c.NonhumansFile); err != nil {
			return err
		}
	}
	store := c.store(e)
	marks := make([]spool.Mark, len(c.Services))
	for i, svc := range c.Services {
		marks[i] = spool.Mark{Service: svc, Port: c.ServicePort, Reason: reason, Expiration: c.expirationTime, Drain: c.Drain}
	}
	var check func(spool.Set) error
	if c.guardFlags.on(e) {
		check = guardCheck(e, c.lbFlags, marks)
	}
	ms, err := store.PutAll(marks, check)
	if err != nil {
		return err
	}
	var written []markJSON
	for _, m := range ms {
		logChange(e, audit.Change{Action: audit.ActionOf(m), Service: m.Service, Port: m.Port, Reason: m.Reason, Expiration: m.Expiration, Force: c.Force})
		written = append(written, toMarkJSON(m, now))
	}
	writtenAt := time.Now()
	if c.JSON {
		if err := json.NewEncoder(e.Stdout).Encode(written); err != nil {
			return err
		}
	}
	if c.Wait {
		tgt := lb.Down
		if c.Drain {
			tgt = lb.Drain
		}
		return waitFor(e, c.lbFlags, c.Services, c.ServicePort, tgt, c.Sessions, writtenAt)
	}
	return nil
}

type statusCmd struct {
	spoolFlags
	pythonReason
	pythonPort
	ServicePort int      `short:"P" name:"service-port" default:"0" help:"Show the state of this instance (port), including its own mark."`
	JSON        bool     `name:"json" help:"Print the states as JSON."`
	Services    []string `arg:"" name:"service" predictor:"marked" help:"Service names."`
}

// errDown makes hastatus exit 1 without printing an error: the output already says it.
var errDown = errors.New("down")

func (c *statusCmd) Run(e *Env) error {
	if err := validateTargets(c.Services, c.ServicePort); err != nil {
		return err
	}
	store := c.store(e)
	// Fail closed is for the server and for single unreadable marks; a user who cannot read
	// the spool at all must be told so, not shown every service DOWN.
	if err := store.CheckReadable(); err != nil {
		return err
	}
	type state struct {
		Service string `json:"service"`
		Port    int    `json:"port"`
		Up      bool   `json:"up"`
		// State is UP, DOWN or DRAIN, as the first column of the text output says.
		State string    `json:"state"`
		Mark  *markJSON `json:"mark,omitempty"`
	}
	var states []state
	anyDown := false
	for _, svc := range c.Services {
		m, down := store.Status(svc, c.ServicePort)
		st := state{Service: svc, Port: c.ServicePort, Up: !down, State: stateWord(m, down)}
		if down {
			anyDown = true
		}
		if down || m.WeightOnly() {
			mj := toMarkJSON(m, e.Now())
			st.Mark = &mj
		}
		states = append(states, st)
		if c.JSON {
			continue
		}
		switch {
		case down:
			fmt.Fprintf(e.Stdout, "%s\t%s\t%s\n", st.State, svc, oneLine(m.Reason))
		case m.WeightOnly():
			fmt.Fprintf(e.Stdout, "UP\t%s\tweight %d%%\n", svc, *m.Weight)
		default:
			fmt.Fprintf(e.Stdout, "UP\t%s\n", svc)
		}
	}
	if c.JSON {
		if err := json.NewEncoder(e.Stdout).Encode(states); err != nil {
			return err
		}
	}
	if anyDown {
		return errDown
	}
	return nil
}

type downedCmd struct {
	spoolFlags
	pythonReason
	pythonPort
	JSON bool `name:"json" help:"Print the marks as JSON."`
}

func (c *downedCmd) Run(e *Env) error {
	marks, err := c.store(e).List()
	if err != nil {
		return err
	}
	now := e.Now()
	if c.JSON {
		out := make([]markJSON, 0, len(marks))
		for _, m := range marks {
			out = append(out, toMarkJSON(m, now))
		}
		return json.NewEncoder(e.Stdout).Encode(out)
	}
	for _, m := range marks {
		expiry := "never expires"
		if !m.Expiration.IsZero() {
			expiry = fmt.Sprintf("expires %s (in %s)", m.Expiration.UTC().Format(time.RFC3339), roundDuration(m.Expiration.Sub(now)))
		}
		fmt.Fprintf(e.Stdout, "%s\tport=%d\t%s\t%s since %s (%s ago)\t%s\n",
			m.Service, m.Port, oneLine(m.Reason), markKind(m), m.Creation.UTC().Format(time.RFC3339), roundDuration(now.Sub(m.Creation)), expiry)
	}
	return nil
}

// markJSON is how marks appear in --json output: unix seconds, like the spool files themselves.
type markJSON struct {
	Service    string   `json:"service"`
	Port       int      `json:"port"`
	Reason     string   `json:"reason"`
	Creation   *int64   `json:"creation"`    // null when unknown (an unreadable mark)
	Expiration *int64   `json:"expiration"`  // null: never expires
	AgeSeconds *float64 `json:"age_seconds"` // null when the creation is unknown
	Error      string   `json:"error,omitempty"`
	// Kind is down, drain or weight (a weight-only mark, which holds nothing down).
	Kind   spool.Kind `json:"kind"`
	Drain  bool       `json:"drain"`
	Weight *int       `json:"weight"` // percent; null when the mark sets none
}

// stateWord is hastatus's first column: DRAIN for a drain mark, DOWN for any other mark that
// holds the service down, UP otherwise (a weight-only mark included).
func stateWord(m spool.Mark, down bool) string {
	switch {
	case !down:
		return "UP"
	case m.Kind() == spool.KindDrain:
		return "DRAIN"
	}
	return "DOWN"
}

// markKind is what a mark does, as the commands print it: its kind, with the percentage of a
// weight ("weight 30%").
func markKind(m spool.Mark) string {
	if k := m.Kind(); k != spool.KindWeight {
		return string(k)
	}
	return fmt.Sprintf("%s %d%%", spool.KindWeight, *m.Weight)
}

func toMarkJSON(m spool.Mark, now time.Time) markJSON {
	out := markJSON{Service: m.Service, Port: m.Port, Reason: m.Reason}
	if !m.Creation.IsZero() {
		creation, age := m.Creation.Unix(), now.Sub(m.Creation).Seconds()
		out.Creation, out.AgeSeconds = &creation, &age
	}
	if !m.Expiration.IsZero() {
		exp := m.Expiration.Unix()
		out.Expiration = &exp
	}
	if m.Err != nil {
		out.Error = m.Err.Error()
	}
	out.Kind = m.Kind()
	out.Drain, out.Weight = m.Drain && m.Err == nil, m.Weight
	return out
}

func validateTargets(services []string, port int) error {
	if len(services) == 0 {
		return usageErrorf("no service named")
	}
	for _, svc := range services {
		if err := spool.ValidateName(svc); err != nil {
			return err
		}
		if err := spool.ValidatePort(svc, port); err != nil {
			return err
		}
	}
	return nil
}

// parseFriendlyDuration reads --for: Prometheus's duration syntax, whose days and weeks
// ("1d12h", "2w") are what maintenance windows are planned in, or else Go's, for fractions
// ("1.5h").
func parseFriendlyDuration(s string) (time.Duration, error) {
	d, err := model.ParseDuration(s)
	if err != nil {
		std, stdErr := time.ParseDuration(s)
		if stdErr != nil {
			return 0, errors.New("not a duration like 30m, 2h or 1d12h")
		}
		d = model.Duration(std)
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return time.Duration(d), nil
}

// parseExpirationFlag reads hadown's -e: a unix time in seconds, with a fraction if wanted
// (the older hadown read it as a float, and scripts pass time.time() values), finite and
// ahead of now.
func parseExpirationFlag(text string, now time.Time) (time.Time, error) {
	sec, err := strconv.ParseFloat(text, 64)
	if err != nil || math.IsNaN(sec) || math.IsInf(sec, 0) {
		return time.Time{}, usageErrorf("--expiration %.40q is not a unix time", text)
	}
	// Times before now, 0 and negative ones included, are all the same mistake; saying so
	// beats saying that the epoch is out of range.
	if sec < 0 {
		return time.Time{}, usageErrorf("--expiration %s is not in the future", text)
	}
	if sec <= float64(now.Unix()) {
		return time.Time{}, usageErrorf("--expiration %s (%s) is not in the future", text, time.Unix(int64(sec), 0).UTC().Format(time.RFC3339))
	}
	t, err := spool.ParseUnixTime(text)
	if err != nil {
		return time.Time{}, usageErrorf("--expiration %.40q is not a unix time the spool can hold", text)
	}
	if !t.After(now) {
		return time.Time{}, usageErrorf("--expiration %s (%s) is not in the future", text, t.UTC().Format(time.RFC3339Nano))
	}
	return t, nil
}

// defaultReason is who ran the command: $SUDO_USER, else $SSH_USER, else the effective user. A
// shared or robot account listed in the nonhumans file says nothing about who did it, so it is
// refused.
func defaultReason(e *Env, nonhumansFile string) (string, error) {
	name := e.Getenv("SUDO_USER")
	if name == "" {
		name = e.Getenv("SSH_USER")
	}
	if name == "" {
		u, err := user.LookupId(strconv.Itoa(os.Geteuid()))
		if err != nil {
			return "", fmt.Errorf("find the user running this (use --reason): %w", err)
		}
		name = u.Username
	}
	nonhuman, err := listed(nonhumansFile, name)
	if err != nil {
		return "", err
	}
	if nonhuman {
		return "", errors.New("please use --reason to tell us who you really are")
	}
	return name, nil
}

func listed(path, name string) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) == name {
			return true, nil
		}
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	return false, nil
}
