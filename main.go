// Command hacheck is a health-check proxy for HAProxy: it answers HAProxy's checks from the
// host's maintenance spool and a cached real check of the local service, and it is the operator
// CLI for that spool. Installed under the names haup, hadown, hastatus, halist and hashowdowned
// (symlinks) it behaves as the matching subcommand, like the Python hacheck's console scripts.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kong"

	"github.com/hacheck/hacheck/server"
	"github.com/hacheck/hacheck/spool"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise it comes from the
// module's build info.
var version = ""

// Exit codes, documented in the README.
const (
	exitOK    = 0
	exitDown  = 1 // hastatus: a service is down; also a runtime failure
	exitUsage = 2 // bad flags or names, config errors, missing access to the spool
)

// multiCall maps the names the binary may be invoked under to the subcommand they stand for.
var multiCall = map[string]string{
	"haup":         "up",
	"hadown":       "down",
	"hastatus":     "status",
	"halist":       "list",
	"hashowdowned": "downed",
}

// env is everything a command takes from the outside world, so tests can run commands in-process
// or as subprocesses without touching /etc or the real user.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
}

// spoolFlags is the spool location every spool command shares.
type spoolFlags struct {
	SpoolRoot string `name:"spool-root" default:"/var/spool/hacheck" help:"Directory holding the maintenance marks." env:"HACHECK_SPOOL_ROOT"`
}

func (f spoolFlags) store(e *env) *spool.Store { return spool.New(f.SpoolRoot, spool.WithClock(e.now)) }

type cli struct {
	Serve   serveCmd   `cmd:"" default:"withargs" help:"Run the health-check server (the default command)."`
	Up      upCmd      `cmd:"" help:"Remove maintenance marks (haup). Idempotent."`
	Down    downCmd    `cmd:"" help:"Mark services down for maintenance (hadown)."`
	Status  statusCmd  `cmd:"" help:"Show whether services are up or down (hastatus); exit 1 if any is down."`
	Downed  downedCmd  `cmd:"" help:"List every current mark with its reason, age and expiry (hashowdowned)."`
	List    listCmd    `cmd:"" help:"List services the running server checked recently (halist)."`
	Version versionCmd `cmd:"" help:"Print the version."`
}

type upCmd struct {
	spoolFlags
	ServicePort int      `short:"P" name:"service-port" default:"0" help:"Remove only the mark of this instance (port); 0 means the whole service."`
	JSON        bool     `name:"json" help:"Print what was done as JSON."`
	Services    []string `arg:"" name:"service" help:"Service names; 'all' is the host-wide mark."`
}

func (c *upCmd) Run(e *env) error {
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
		results = append(results, result{svc, c.ServicePort, removed})
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(results)
	}
	return nil
}

type downCmd struct {
	spoolFlags
	ServicePort    int           `short:"P" name:"service-port" default:"0" help:"Mark only this instance (port) down; 0 means the whole service."`
	Reason         string        `short:"r" help:"Why the service is down; shown to HAProxy and in /metrics. Default: the user running the command."`
	Expiration     *int64        `short:"e" xor:"expiry" help:"Unix time at which the mark stops counting."`
	For            string        `name:"for" xor:"expiry" placeholder:"DURATION" help:"Mark down for this long, e.g. 30m, 2h, 1d12h."`
	JSON           bool          `name:"json" help:"Print the written marks as JSON."`
	NonhumansFile  string        `name:"nonhumans-file" default:"/etc/nonhumans" hidden:"" help:"Accounts that must give a --reason."`
	Services       []string      `arg:"" name:"service" help:"Service names; 'all' marks every service on this host down."`
	expirationTime time.Time     `kong:"-"`
	forDuration    time.Duration `kong:"-"`
}

func (c *downCmd) Run(e *env) error {
	if err := validateTargets(c.Services, c.ServicePort); err != nil {
		return err
	}
	now := e.now()
	switch {
	case c.For != "":
		d, err := parseFriendlyDuration(c.For)
		if err != nil {
			return usageErrorf("--for %q: %v", c.For, err)
		}
		c.expirationTime = now.Add(d)
	case c.Expiration != nil:
		c.expirationTime = time.Unix(*c.Expiration, 0)
		if !c.expirationTime.After(now) {
			return usageErrorf("--expiration %d (%s) is not in the future", *c.Expiration, c.expirationTime.UTC().Format(time.RFC3339))
		}
	}
	reason := c.Reason
	if reason == "" {
		var err error
		if reason, err = defaultReason(e, c.NonhumansFile); err != nil {
			return err
		}
	}
	store := c.store(e)
	var written []markJSON
	for _, svc := range c.Services {
		m, err := store.Down(svc, c.ServicePort, reason, c.expirationTime)
		if err != nil {
			return err
		}
		written = append(written, toMarkJSON(m, now))
	}
	if c.JSON {
		return json.NewEncoder(e.stdout).Encode(written)
	}
	return nil
}

type statusCmd struct {
	spoolFlags
	ServicePort int      `short:"P" name:"service-port" default:"0" help:"Show the state of this instance (port), including its own mark."`
	JSON        bool     `name:"json" help:"Print the states as JSON."`
	Services    []string `arg:"" name:"service" help:"Service names."`
}

// errDown makes hastatus exit 1 without printing an error: the output already says it.
var errDown = errors.New("down")

func (c *statusCmd) Run(e *env) error {
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
		Service string    `json:"service"`
		Port    int       `json:"port"`
		Up      bool      `json:"up"`
		Mark    *markJSON `json:"mark,omitempty"`
	}
	var states []state
	anyDown := false
	for _, svc := range c.Services {
		m, down := store.Status(svc, c.ServicePort)
		st := state{Service: svc, Port: c.ServicePort, Up: !down}
		if down {
			anyDown = true
			mj := toMarkJSON(m, e.now())
			st.Mark = &mj
		}
		states = append(states, st)
		if c.JSON {
			continue
		}
		if down {
			fmt.Fprintf(e.stdout, "DOWN\t%s\t%s\n", svc, oneLine(m.Reason))
		} else {
			fmt.Fprintf(e.stdout, "UP\t%s\n", svc)
		}
	}
	if c.JSON {
		if err := json.NewEncoder(e.stdout).Encode(states); err != nil {
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
	JSON bool `name:"json" help:"Print the marks as JSON."`
}

func (c *downedCmd) Run(e *env) error {
	marks, err := c.store(e).List()
	if err != nil {
		return err
	}
	now := e.now()
	if c.JSON {
		out := make([]markJSON, 0, len(marks))
		for _, m := range marks {
			out = append(out, toMarkJSON(m, now))
		}
		return json.NewEncoder(e.stdout).Encode(out)
	}
	for _, m := range marks {
		expiry := "never expires"
		if !m.Expiration.IsZero() {
			expiry = fmt.Sprintf("expires %s (in %s)", m.Expiration.UTC().Format(time.RFC3339), roundDuration(m.Expiration.Sub(now)))
		}
		fmt.Fprintf(e.stdout, "%s\tport=%d\t%s\tdown since %s (%s ago)\t%s\n",
			m.Service, m.Port, oneLine(m.Reason), m.Creation.UTC().Format(time.RFC3339), roundDuration(now.Sub(m.Creation)), expiry)
	}
	return nil
}

type listCmd struct {
	Port      int    `short:"p" default:"3333" help:"Port of the running hacheck server."`
	Threshold int    `default:"600" help:"Only services checked within this many seconds."`
	Timeout   string `default:"5s" help:"How long to wait for the server."`
	JSON      bool   `name:"json" help:"Print the server's answer as JSON."`
}

func (c *listCmd) Run(e *env) error {
	timeout, err := time.ParseDuration(c.Timeout)
	if err != nil {
		return usageErrorf("--timeout %q: %v", c.Timeout, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u := url.URL{Scheme: "http", Host: "localhost:" + strconv.Itoa(c.Port), Path: "/recent", RawQuery: "threshold=" + strconv.Itoa(c.Threshold)}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("ask the server at %s: %w", u.String(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ask the server at %s: %s", u.String(), resp.Status)
	}
	var recent struct {
		SeenServices [][2]json.RawMessage `json:"seen_services"`
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fmt.Errorf("read %s: %w", u.String(), err)
	}
	if c.JSON {
		_, err := e.stdout.Write(body)
		return err
	}
	if err := json.Unmarshal(body, &recent); err != nil {
		return fmt.Errorf("decode %s: %w", u.String(), err)
	}
	for _, pair := range recent.SeenServices {
		var name string
		var seen struct {
			Code     int     `json:"code"`
			RemoteIP string  `json:"remote_ip"`
			TS       float64 `json:"ts"`
		}
		if json.Unmarshal(pair[0], &name) != nil || json.Unmarshal(pair[1], &seen) != nil {
			return fmt.Errorf("decode %s: unexpected entry %s", u.String(), pair[0])
		}
		ago := e.now().Sub(time.Unix(int64(seen.TS), 0))
		fmt.Fprintf(e.stdout, "%s\tcode=%d\tfrom=%s\t%s ago\n", name, seen.Code, seen.RemoteIP, roundDuration(ago))
	}
	return nil
}

type versionCmd struct{}

func (versionCmd) Run(e *env) error {
	fmt.Fprintf(e.stdout, "hacheck %s\n", buildVersion())
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
	return out
}

// usageError is bad input from the command line: exit 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

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

var daysPrefix = regexp.MustCompile(`^(\d+)d`)

// parseFriendlyDuration is time.ParseDuration plus a leading whole number of days ("1d12h"),
// which operators planning maintenance windows reach for.
func parseFriendlyDuration(s string) (time.Duration, error) {
	var d time.Duration
	if m := daysPrefix.FindStringSubmatch(s); m != nil {
		days, err := strconv.Atoi(m[1])
		if err != nil || days > 100000 {
			return 0, errors.New("too many days")
		}
		d = time.Duration(days) * 24 * time.Hour
		s = s[len(m[0]):]
	}
	if s != "" {
		rest, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.New("not a duration like 30m, 2h or 1d12h")
		}
		d += rest
	}
	if d <= 0 {
		return 0, errors.New("must be positive")
	}
	return d, nil
}

// defaultReason is who ran the command: $SUDO_USER, else $SSH_USER, else the effective user. A
// shared or robot account listed in the nonhumans file says nothing about who did it, so it is
// refused.
func defaultReason(e *env, nonhumansFile string) (string, error) {
	name := e.getenv("SUDO_USER")
	if name == "" {
		name = e.getenv("SSH_USER")
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

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

func roundDuration(d time.Duration) time.Duration {
	if d < 0 {
		d = 0
	}
	return d.Round(time.Second)
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// argsFor puts the subcommand a multi-call name stands for in front of the arguments.
func argsFor(argv0 string, args []string) (name string, out []string) {
	base := filepath.Base(argv0)
	if sub, ok := multiCall[base]; ok {
		return base, append([]string{sub}, args...)
	}
	return "hacheck", args
}

// run is main without the process: it returns the exit code.
func run(argv0 string, args []string, e *env) int {
	name, args := argsFor(argv0, args)
	exitCode := -1
	parser, err := kong.New(&cli{},
		kong.Name(name),
		kong.Description("hacheck answers HAProxy's health checks from this host's maintenance spool and cached checks of the local services."),
		kong.Writers(e.stdout, e.stderr),
		kong.Exit(func(code int) { exitCode = code }),
		kong.Bind(e),
		kong.ConfigureHelp(kong.HelpOptions{Compact: true}),
	)
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	ctx, err := parser.Parse(args)
	if exitCode >= 0 { // --help or similar
		return exitCode
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
		return exitUsage
	}
	err = ctx.Run(e)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errDown):
		return exitDown
	}
	fmt.Fprintf(e.stderr, "%s: %s\n", name, oneLine(err.Error()))
	var usage usageError
	var access *spool.AccessError
	var cfg *server.ConfigError
	var invalid *spool.InvalidError
	if errors.As(err, &usage) || errors.As(err, &access) || errors.As(err, &cfg) || errors.As(err, &invalid) {
		return exitUsage
	}
	return exitDown
}

func main() {
	os.Exit(run(os.Args[0], os.Args[1:], &env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, now: time.Now}))
}

type serveCmd struct {
	spoolFlags
	ConfigFile  string `short:"c" name:"config-file" help:"YAML configuration file; without one the embedded defaults apply."`
	Port        []int  `short:"p" default:"3333" help:"Port to listen on (repeatable)."`
	BindAddress string `short:"B" name:"bind-address" default:"" help:"Address to listen on; default all addresses, IPv4 and IPv6."`
	Verbose     bool   `short:"v" help:"Log one line per request."`
	CheckConfig bool   `name:"check-config" help:"Validate the configuration file and exit."`
}

func (c *serveCmd) Run(e *env) error {
	for _, p := range c.Port {
		if p < 0 || p > 65535 {
			return usageErrorf("--port %d: must be 0-65535", p)
		}
	}
	if c.CheckConfig {
		cfg, warnings, err := server.LoadConfig(c.ConfigFile)
		if err != nil {
			return &server.ConfigError{Err: err}
		}
		// What serve checks against the machine beyond the file itself.
		if err := server.CheckRlimitNofile(cfg.RlimitNofile); err != nil {
			return &server.ConfigError{Err: err}
		}
		for _, w := range warnings {
			fmt.Fprintf(e.stderr, "warning: %s\n", w)
		}
		name := c.ConfigFile
		if name == "" {
			name = "embedded defaults"
		}
		fmt.Fprintf(e.stdout, "%s: OK\n", name)
		return nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload := make(chan struct{})
	go func() {
		for range hup {
			select {
			case reload <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return server.Run(ctx, server.RunOptions{
		ConfigPath:  c.ConfigFile,
		SpoolRoot:   c.SpoolRoot,
		BindAddress: c.BindAddress,
		Ports:       c.Port,
		Verbose:     c.Verbose,
		Version:     buildVersion(),
		Reload:      reload,
	}, e.stderr)
}
